"""The requests each endpoint takes, as pydantic models generated from the configuration
dataclasses (`seqtool.config`): a field's default and range are its command-line option's,
declared once there; the server's limits (`ServerLimits`) only narrow them. A value outside
gets a one-line 400 (413 for a request too large to take), NaN and infinity included."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from seqtool.config import (
    MAX_INPUT_LENGTH,
    RANGE_KEYS,
    SamplingConfig,
    SearchConfig,
    ServerLimits,
    describe_range,
    range_problem,
)

SEED_RANGE = (-(2**63), 2**63 - 1)  # a torch.Generator seed
TOO_LARGE = "too_large"  # the error type answered 413


class RequestError(Exception):
    """A request the server will not answer: a one-line message and an HTTP status."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def config_field(config: type, name: str, at_most: float | None = None) -> tuple[Any, Any]:
    """(type, pydantic Field) of a config dataclass field: its default, its choices, or its
    range checked by `config.range_problem` (the command line's own rule: finite, inside the
    declared range, `or_zero`); strict (no "5" for 5, no true for 1); `at_most` narrows the
    range's top (the server's limit)."""
    spec = {f.name: f for f in fields(config)}[name]
    meta, default = spec.metadata, spec.default
    if "choices" in meta:
        return Literal[tuple(meta["choices"])], Field(default, description=meta["help"])
    meta = dict(meta)
    if at_most is not None and (meta.get("max") is None or at_most < meta["max"]):
        meta.update(max=at_most, max_open=False)

    def in_range(value: Any) -> Any:
        problem = range_problem(meta, value)
        if problem:
            raise PydanticCustomError("range", problem)
        return value

    kind = type(default)
    extra: dict[str, Any] = {"allow_inf_nan": False} if kind is float else {}
    described = f"{meta['help']} ({describe_range(meta)})" if any(
        k in meta for k in RANGE_KEYS) else meta["help"]
    bounds = {}  # for the OpenAPI description; the check is `in_range`
    if "min" in meta and not meta.get("or_zero"):
        bounds["exclusiveMinimum" if meta.get("min_open") else "minimum"] = meta["min"]
    if "max" in meta:
        bounds["exclusiveMaximum" if meta.get("max_open") else "maximum"] = meta["max"]
    return (Annotated[kind, AfterValidator(in_range)],
            Field(default, strict=True, description=described, json_schema_extra=bounds,
                  **extra))


def valid_text(value: str, where: str) -> str:
    """A string that UTF-8 can carry: a lone surrogate ("\\ud800") fails here, in its own
    request, not later in a batch beside other requests."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("not_text", f"{where} holds a lone surrogate, which is no "
                                  "Unicode text") from None
    return value


def too_large(message: str) -> PydanticCustomError:
    return PydanticCustomError(TOO_LARGE, message)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def request_models(limits: ServerLimits) -> dict[str, type[BaseModel]]:
    """{endpoint: its request model} for these limits."""
    model_name = Field(None, description="The model's name (GET /models); none = the task's "
                       "first.")
    max_input = Field(MAX_INPUT_LENGTH if MAX_INPUT_LENGTH <= limits.max_input_pieces
                      else limits.max_input_pieces, strict=True, ge=0,
                      le=limits.max_input_pieces, description="Pieces of a text read at most.")

    class Texts(Strict):
        texts: list[str] = Field(description="The texts, one result each.")
        max_input_length: int = max_input
        model: str | None = model_name

        @model_validator(mode="after")
        def sizes(self):
            if not self.texts:
                raise PydanticCustomError("empty", "'texts' is empty")
            if len(self.texts) > limits.max_texts:
                raise too_large(f"too many texts: {len(self.texts)} (at most "
                                f"{limits.max_texts} a request)")
            for i, text in enumerate(self.texts):
                if len(text) > limits.max_chars:
                    raise too_large(f"texts[{i}] is longer than {limits.max_chars} characters")
                valid_text(text, f"texts[{i}]")
            return self

    search = {name: config_field(SearchConfig, name, at_most={
        "beam": limits.max_beam, "max_length_ratio": limits.max_translation_ratio}.get(name))
        for name in ("beam", "n_best", "length_penalty", "max_length_ratio", "precision")}
    search["attention"] = (bool, Field(False, strict=True, description="Also answer the best "
                                       "hypothesis's attention weights."))
    translate = create_model("TranslateRequest", __base__=Texts, **search)

    @model_validator(mode="after")
    def n_best_within_beam(self):
        if self.n_best > self.beam:
            raise PydanticCustomError("n_best", f"'n_best' ({self.n_best}) cannot exceed "
                                      f"'beam' ({self.beam})")
        return self

    translate = create_model("TranslateRequest", __base__=translate,
                             __validators__={"n_best_within_beam": n_best_within_beam})

    sampling = {name: config_field(SamplingConfig, name, at_most={
        "max_output_length": limits.max_output_pieces}.get(name))
        for name in ("temperature", "top_k", "top_p", "max_output_length", "guidance",
                     "no_repeat_ngram")}
    # a server reads no file a client names: of --lexicon's values, only these two
    sampling["lexicon"] = (Literal["model", "none"],
                           Field(SamplingConfig.lexicon, description="Words samples may use."))

    class Generate(Strict):
        label: str = Field(description="The class of the samples.")
        n: Annotated[int, Field(strict=True, ge=1, le=limits.max_samples)] = 1
        prompt: str = Field("", description="The samples continue it.")
        seed: Annotated[int, Field(strict=True, ge=SEED_RANGE[0], le=SEED_RANGE[1])] = 0
        model: str | None = model_name

        @model_validator(mode="after")
        def sizes(self):
            valid_text(self.label, "'label'")
            valid_text(self.prompt, "'prompt'")
            if len(self.prompt) > limits.max_chars:
                raise too_large(f"'prompt' is longer than {limits.max_chars} characters")
            if len(self.prompt) * self.n > limits.max_prompt_samples:
                raise too_large(f"prompt characters times n is {len(self.prompt) * self.n}, "
                                f"over {limits.max_prompt_samples}")
            return self

    generate = create_model("GenerateRequest", __base__=Generate, **sampling)
    return {"classify": create_model("ClassifyRequest", __base__=Texts),
            "embed": create_model("EmbedRequest", __base__=Texts),
            "translate": translate, "generate": generate}


def parse(model: type[BaseModel], body: Any) -> BaseModel:
    """The request, or a RequestError saying in one line what is wrong with it."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        error = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in error["loc"])
        if error["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise RequestError(f"unknown field {where!r} (known: {known})") from None
        if error["type"] == "missing":
            raise RequestError(f"missing field {where!r}") from None
        message = " ".join(str(error["msg"]).split())
        status = 413 if error["type"] == TOO_LARGE else 400
        raise RequestError(f"'{where}': {message}" if where else message, status) from None
