"""One typed settings object, read from the environment (prefix ``JSUG_``) once and passed down.

Nothing else in the package reads the environment, so a test or a second process can build
its own ``Settings`` without touching global state.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class MatcherSettings(BaseModel):
    """Thresholds and weights of the FAQ matcher.

    ``answer_threshold`` applies to the calibrated probability that the best FAQ is right,
    ``suggest_threshold`` to the calibrated probability that the question is in scope (see
    ``bot/faq/calibration.py``); ``answer_margin`` to the raw fused score's lead over the runner-up;
    ``suggest_ratio``: a suggestion must score at least this share of the best one.
    ``answer_floor``: the best FAQ's lexical score below which nothing is answered, however sure
    the calibration is (a question with almost no word of the FAQ is at most a suggestion).
    ``semantic`` turns the semantic view of the slow path on (``bot/faq/semantic.py``);
    ``weight_semantic`` is its score's weight added to the lexical score there, and
    ``semantic_answer_threshold`` the answer threshold of a decision that read it;
    ``semantic_wait_seconds``: how long a question waits for the model when another is using it
    before it is decided on the lexical views alone.
    ``unanswered_margin``: how much closer a message must be to an unanswered question
    (``unanswered.yaml``) than to the best FAQ's phrasings to be sent to the secretariat.
    """

    answer_threshold: float = Field(0.85, ge=0.0, le=1.0)
    suggest_threshold: float = Field(0.85, ge=0.0, le=1.0)
    answer_margin: float = Field(0.02, ge=0.0, le=1.0)
    answer_floor: float = Field(0.05, ge=0.0, le=1.0)
    max_suggestions: int = Field(3, ge=1, le=10)
    suggest_ratio: float = Field(0.6, ge=0.0, le=1.0)
    weight_chars: float = Field(0.35, ge=0.0)
    weight_words: float = Field(0.40, ge=0.0)
    weight_reading: float = Field(0.25, ge=0.0)
    weight_answer: float = Field(0.45, ge=0.0, le=1.0)
    weight_centroid: float = Field(0.25, ge=0.0, le=1.0)
    fuzzy_max_length: int = Field(12, ge=0)
    fuzzy_floor: float = Field(0.80, ge=0.0, le=1.0)
    shortlist: int = Field(50, ge=3)
    max_query_chars: int = Field(2000, ge=10)
    semantic: bool = True
    weight_semantic: float = Field(1.0, ge=0.0)
    weight_semantic_english: float = Field(4.0, ge=0.0)
    semantic_answer_threshold: float = Field(0.85, ge=0.0, le=1.0)
    unanswered_margin: float = Field(0.02, ge=-1.0, le=1.0)
    semantic_wait_seconds: float = Field(0.05, ge=0.0)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "MatcherSettings":
        if self.weight_answer + self.weight_centroid >= 1:
            raise ValueError("weight_answer + weight_centroid must stay below 1 (the phrasings need weight)")
        if self.weight_chars + self.weight_words + self.weight_reading <= 0:
            raise ValueError("at least one of weight_chars, weight_words, weight_reading must be positive")
        return self


class MailSettings(BaseModel):
    """SMTP delivery. Without a host, mails are shown in the demo mailbox (stderr) on the demo database
    only; anywhere else delivery refuses to run (``MailNotConfiguredError``) and leaves the outbox as it is.

    Retries back off: after the n-th failed attempt a mail waits ``retry_first_seconds * 2**(n-1)``,
    at most ``retry_max_seconds``, plus up to 20 % at random. With the defaults (1 min doubling to a
    4 h cap, ``max_attempts`` 14) the waits are 1, 2, 4, … 128 min, then 4 h five times: the last
    attempt comes at least 24 h 15 min after the first, so an outage of a day loses no mail.
    ``send_deadline_seconds`` bounds one mail's whole SMTP conversation (connect to QUIT), so a
    server that trickles bytes cannot hold a delivery; ``timeout_seconds`` bounds each socket operation.
    """

    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_tls: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    sender: str = "JSUG事務局 <no-reply@jsug.org>"
    secretariat_address: str = "secretariat@jsug.org"
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(14, ge=1)
    retry_first_seconds: float = Field(60.0, gt=0)
    retry_max_seconds: float = Field(4 * 3600.0, gt=0)
    send_deadline_seconds: float = Field(60.0, gt=0)


class WebSettings(BaseModel):
    """The web channel (``jsug-bot serve``): limits, sessions, and whether it delivers mail itself.

    ``rate_limit_per_minute`` counts chat requests per client address (0 switches the limit off,
    for load tests), ``session_rate_limit_per_minute`` per chat session; the counts live in
    ``rate_limit_storage`` (``memory://``, or ``redis://host:6379`` so that several processes share
    them). ``deliver_mail``: deliver the outbox from a background task inside ``serve``; unset, it
    does so on the embedded database only (production runs the Procfile's ``worker``).
    """

    rate_limit_per_minute: int = Field(60, ge=0)
    session_rate_limit_per_minute: int = Field(30, ge=0)
    rate_limit_storage: str = "memory://"
    session_days: int = Field(30, ge=1)
    deliver_mail: bool | None = None
    mail_interval_seconds: float = Field(5.0, gt=0)
    forwarded_allow_ips: str = "127.0.0.1"


def _env(name: str) -> AliasChoices:
    """A setting read from its conventional name (``SLACK_BOT_TOKEN``) or with the ``JSUG_`` prefix."""
    return AliasChoices(name, f"JSUG_{name}", name.lower())


class Settings(BaseSettings):
    """Everything configurable, e.g. ``DATABASE_URL``, ``JSUG_FAQ_DIR``, ``JSUG_MAIL__SMTP_HOST``."""

    model_config = SettingsConfigDict(env_prefix="JSUG_", env_nested_delimiter="__", extra="ignore")

    faq_dir: Path = REPO_ROOT / "faq_data"
    intents_dir: Path = REPO_ROOT / "intents"
    cache_dir: Path = REPO_ROOT / ".cache"
    """Derived files that are safe to delete (the corpus's embeddings)."""
    database_url: str = Field(
        f"sqlite:///{REPO_ROOT / 'jsug.sqlite3'}", validation_alias=AliasChoices("DATABASE_URL", "JSUG_DATABASE_URL")
    )
    public_url: str = "http://127.0.0.1:8000"
    allowed_origins: str = Field("", validation_alias=AliasChoices("ALLOWED_ORIGINS", "JSUG_ALLOWED_ORIGINS"))
    secret_key: SecretStr | None = None
    web: WebSettings = WebSettings()
    matcher: MatcherSettings = MatcherSettings()
    mail: MailSettings = MailSettings()
    conversation_timeout_minutes: int = Field(30, ge=1)
    reset_token_minutes: int = Field(30, ge=1)
    reset_requests_per_hour: int = Field(3, ge=1)
    code_minutes: int = Field(10, ge=1)
    code_attempts: int = Field(5, ge=1)
    codes_per_hour: int = Field(5, ge=1)
    # Limits on proving who one is (bot/attempt_limits.py, counted per hour in ``web.rate_limit_storage``):
    # a conversation's own limits stay below the address's (``codes_per_hour``, ``wrong_codes_per_address``),
    # so one attacker's conversation cannot use up what the member's own conversation needs.
    code_requests_per_session: int = Field(3, ge=1)
    code_requests_overall: int = Field(300, ge=1)
    wrong_codes_per_session: int = Field(10, ge=1)
    wrong_codes_per_address: int = Field(25, ge=1)
    wrong_codes_overall: int = Field(1000, ge=1)
    identity_minutes: int = Field(30, ge=1)
    """How long a verified identity lasts (``JSUG_IDENTITY_MINUTES``); a change after that asks again."""
    # The Slack app (bot/channels/slack): HTTP mode needs the bot token and the signing secret, Socket
    # Mode the bot token and the app-level token; without a bot token there is no Slack channel.
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_secretariat_channel: str | None = Field(None, validation_alias=_env("SLACK_SECRETARIAT_CHANNEL"))
    slack_api_base_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_BASE_URL"))
    slack_post_interval_seconds: float = Field(5.0, gt=0, validation_alias=_env("SLACK_POST_INTERVAL_SECONDS"))
    """How often new requests are looked for to post them to the secretariat channel."""

    @property
    def is_embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def origins(self) -> list[str]:
        """``ALLOWED_ORIGINS`` as a list: comma-separated, blanks and trailing slashes dropped."""
        return [origin.strip().rstrip("/") for origin in self.allowed_origins.split(",") if origin.strip()]

    @property
    def slack_http_enabled(self) -> bool:
        """Whether ``serve`` answers Slack at ``POST /slack/events`` (bot token and signing secret set)."""
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def delivers_mail_in_process(self) -> bool:
        return self.web.deliver_mail if self.web.deliver_mail is not None else self.is_embedded_database
