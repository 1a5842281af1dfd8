"""The extension's properties: one pydantic model, validated once, redacted always.

Bad properties must produce a FATAL `error` naming the field and the reason,
and the key must never appear in it. pydantic's own messages echo the input
value, so `ConfigError` is built from the field path and reason only, with the
value shown for fields that are not secret.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .redaction import mask_secret, redact

SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_BASE_URL = "wss://api.x.ai/v1/stt"
VENDOR = "xai"

# xAI takes short codes ("en"); TEN's ASR results carry a region form.
_LANGUAGE_REGIONS = {
    "zh": "zh-CN",
    "en": "en-US",
    "ja": "ja-JP",
    "ko": "ko-KR",
    "de": "de-DE",
    "fr": "fr-FR",
    "ru": "ru-RU",
    "es": "es-ES",
    "pt": "pt-PT",
    "it": "it-IT",
    "hi": "hi-IN",
    "ar": "ar-AE",
}

# xAI's limits on `keyterm`.
MAX_KEYTERMS = 100
MAX_KEYTERM_CHARS = 50

_SECRET_FIELDS = frozenset({"api_key"})
# Prefix of a model-level validation message that names the field it is about.
_FIELD_MARK = "@field "


def normalize_language(code: str | None) -> str:
    """`en` -> `en-US`; a code that already has a region (or is unknown) is kept."""
    if not code:
        return ""
    return _LANGUAGE_REGIONS.get(code.lower(), code)


class ConfigError(ValueError):
    """A property is wrong. `field` is its dotted path, e.g. `params.sample_rate`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid property {field}: {reason}")
        self.field = field
        self.reason = reason


# A fraction 0.0-1.0 (an integer 0 or 1 is taken as 0.0 or 1.0; no bool, no NaN).
_Fraction = Annotated[StrictFloat, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class XAIParams(BaseModel):
    """`params`: what goes to xAI. Unknown keys are kept and ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    api_key: StrictStr = Field(default="", validate_default=True)
    base_url: StrictStr = DEFAULT_BASE_URL
    language: StrictStr = "en"
    sample_rate: StrictInt = 16000
    encoding: Literal["pcm", "mulaw", "alaw"] = "pcm"
    interim_results: StrictBool = True
    endpointing: StrictInt = Field(default=300, ge=0, le=5000)
    diarize: StrictBool = False
    multichannel: StrictBool = False
    # The upstream extension writes 1 for mono; xAI only reads it in multichannel mode.
    channels: StrictInt = Field(default=1, ge=1, le=8)
    # Optional xAI parameters: None (or no keyterms) is not sent, and the server's
    # default applies.
    keyterm: list[str] | None = None
    filler_words: StrictBool | None = None
    smart_turn: _Fraction | None = None
    smart_turn_timeout: Annotated[StrictInt, Field(ge=1, le=5000)] | None = None
    vad_threshold: _Fraction | None = None

    @field_validator("api_key")
    @classmethod
    def _key_present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is missing (set XAI_API_KEY or params.api_key)")
        return value

    @field_validator("base_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError("must be a ws:// or wss:// URL")
        if not parts.hostname:
            raise ValueError("has no host")
        return value

    @field_validator("keyterm", mode="before")
    @classmethod
    def _keyterms(cls, value: Any) -> list[str] | None:
        # Checked here, not by pydantic's types, so every complaint names the field
        # itself (`params.keyterm`), not one of its items.
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of strings")
        if len(value) > MAX_KEYTERMS:
            raise ValueError(f"{len(value)} terms, at most {MAX_KEYTERMS} allowed")
        terms = []
        for index, term in enumerate(value):
            if not isinstance(term, str):
                raise ValueError(f"term {index} is not a string")
            term = term.strip()
            if not term:
                raise ValueError(f"term {index} is empty")
            if len(term) > MAX_KEYTERM_CHARS:
                raise ValueError(
                    f"term {index} is {len(term)} characters long (at most {MAX_KEYTERM_CHARS})"
                )
            terms.append(term)
        return terms

    @field_validator("sample_rate")
    @classmethod
    def _supported_rate(cls, value: int) -> int:
        if value not in SUPPORTED_SAMPLE_RATES:
            rates = ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)
            raise ValueError(f"must be one of {rates}")
        return value

    @model_validator(mode="after")
    def _channels_fit_mode(self) -> XAIParams:
        if self.multichannel and not 2 <= self.channels <= 8:
            raise ValueError(f"{_FIELD_MARK}channels: must be 2-8 when multichannel is true")
        return self

    @model_validator(mode="after")
    def _smart_turn_timeout_needs_smart_turn(self) -> XAIParams:
        if self.smart_turn_timeout is not None and self.smart_turn is None:
            raise ValueError(
                f"{_FIELD_MARK}smart_turn_timeout: is only valid together with smart_turn"
            )
        return self

    @property
    def audio_channels(self) -> int:
        """Channels actually interleaved in the audio stream."""
        return self.channels if self.multichannel else 1

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm" else 1


class XAIASRConfig(BaseModel):
    """Every property of the extension, with defaults that keep a property.json
    written for the upstream xAI extension working as is."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    dump: StrictBool = False
    dump_path: StrictStr = "/tmp"
    finalize_timeout_ms: StrictInt = Field(default=2000, ge=100, le=86_400_000)
    auto_connect: StrictBool = True
    # How an asr_finalize ends the utterance: "finalize" ({"type": "finalize"}, the
    # connection stays open), "audio_done" (audio.done, the server closes), "auto"
    # (finalize, and audio_done for the rest of the session once finalize is refused
    # or not answered in time).
    finalize_mode: Literal["auto", "finalize", "audio_done"] = "auto"
    params: XAIParams
    # This project's knobs. Audio kept while disconnected, in ms of audio.
    buffer_max_ms: StrictInt = Field(default=60_000, ge=0, le=86_400_000)
    # Un-finalized audio re-sent to the next connection after a failure; 0 disables.
    # Above stall_timeout_ms, so a silent stall found out late is still replayed whole.
    replay_max_ms: StrictInt = Field(default=20_000, ge=0, le=600_000)
    prewarm: StrictBool = True
    # With prewarm: the next connection opens at a turn's first speech, so a finalize
    # only switches sockets (the audio after it never waits for a handshake).
    standby: StrictBool = True
    connect_timeout_ms: StrictInt = Field(default=10_000, ge=100, le=120_000)
    reconnect_base_delay_ms: StrictInt = Field(default=500, ge=0, le=60_000)
    reconnect_max_delay_ms: StrictInt = Field(default=8_000, ge=0, le=600_000)
    reconnect_max_attempts: StrictInt = Field(default=10, ge=1, le=1000)
    healthy_after_ms: StrictInt = Field(default=5_000, ge=0, le=600_000)
    stall_timeout_ms: StrictInt = Field(default=15_000, ge=500, le=600_000)
    # A connection quiet for a second is pinged when speech starts on it; no pong within
    # this and it is dead: its audio goes to the standby (or the next) connection.
    liveness_timeout_ms: StrictInt = Field(default=1_000, ge=50, le=60_000)
    # WebSocket keepalive: a ping this often, as long to answer (finds a dead connection
    # during a silence).
    keepalive_ms: StrictInt = Field(default=5_000, ge=500, le=600_000)
    idle_close_ms: StrictInt = Field(default=30_000, ge=0, le=3_600_000)
    metrics_interval_ms: StrictInt = Field(default=5_000, ge=100, le=600_000)

    @model_validator(mode="after")
    def _delays_ordered(self) -> XAIASRConfig:
        if self.reconnect_max_delay_ms < self.reconnect_base_delay_ms:
            raise ValueError(
                f"{_FIELD_MARK}reconnect_max_delay_ms: must be >= reconnect_base_delay_ms"
            )
        return self

    @property
    def language(self) -> str:
        return normalize_language(self.params.language)

    def redacted(self) -> dict[str, Any]:
        """The config as a dict, safe to log."""
        data = self.model_dump()
        data["params"]["api_key"] = mask_secret(self.params.api_key)
        return data


def parse_config(properties: dict[str, Any] | str) -> XAIASRConfig:
    """Build the config from the extension's property store, or raise ConfigError."""
    if isinstance(properties, str):
        try:
            properties = json.loads(properties) if properties.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError("<properties>", f"not JSON: {exc.msg}")
    if not isinstance(properties, dict):
        raise ConfigError("<properties>", "must be an object")
    properties = {**properties, "params": properties.get("params", {})}
    if not isinstance(properties["params"], dict):
        raise ConfigError("params", "must be an object")
    try:
        return XAIASRConfig.model_validate(properties)
    except ValidationError as exc:
        raise _first_error(exc, properties)


def parse_params_update(current: XAIParams, update: Any) -> XAIParams:
    """`update_configs`: merge new params over the current ones and validate."""
    if not isinstance(update, dict):
        raise ConfigError("params", "must be an object")
    merged = {**current.model_dump(), **update}
    try:
        return XAIParams.model_validate(merged)
    except ValidationError as exc:
        raise _first_error(exc, {"params": merged}, prefix="params")


def _first_error(
    exc: ValidationError, source: dict[str, Any], prefix: str | None = None
) -> ConfigError:
    err = exc.errors(include_input=False, include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    reason = str(err["msg"]).removeprefix("Value error, ")
    # A model-level check names its field inside the message.
    if reason.startswith(_FIELD_MARK):
        head, reason = reason[len(_FIELD_MARK) :].split(": ", 1)
        loc.append(head)
    if prefix and (not loc or loc[0] != prefix):
        loc.insert(0, prefix)
    field = ".".join(loc) or "<properties>"
    value = _lookup(source, loc)
    if loc and loc[-1] not in _SECRET_FIELDS and value is not _MISSING and err["type"] != "missing":
        reason = f"{reason} (got {json.dumps(value)[:80]})"
    # The echoed value may hold the key (pasted into the wrong field): the
    # configuration was rejected, but its key is still a secret.
    key = _lookup(source, ["params", "api_key"])
    return ConfigError(field, redact(reason, key if isinstance(key, str) else None))


_MISSING = object()


def _lookup(source: Any, path: list[str]) -> Any:
    node = source
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node
