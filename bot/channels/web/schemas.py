"""The chat API's request and response bodies, as the OpenAPI document describes them.

Replies are the engine's wire shape (``Reply.as_dict``), one model per ``kind``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TEXT_CHARS = 2000
MAX_ACTION_CHARS = 200
MAX_SESSION_CHARS = 100


class ChatRequest(BaseModel):
    """A member's message (``text``) or a pressed button (``action``, the button's value): one of the two."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(None, max_length=MAX_SESSION_CHARS,
                                   description="The id this API returned; null or unknown starts a new conversation.")
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    action: str | None = Field(None, min_length=1, max_length=MAX_ACTION_CHARS)

    @model_validator(mode="after")
    def _text_or_action(self) -> ChatRequest:
        if (self.text is None) == (self.action is None):
            raise ValueError("send exactly one of 'text' and 'action'")
        return self


class InquiryRequest(BaseModel):
    """The widget's 「事務局に問い合わせる」 form: filed as a request to the secretariat with the transcript."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(None, max_length=MAX_SESSION_CHARS)
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=320)
    question: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class Link(BaseModel):
    label: str
    text: str
    url: str


class Suggestion(BaseModel):
    faq_id: str
    question: str


class ButtonOut(BaseModel):
    label: str
    action: str = Field(description="Send it back as the request's 'action' when the button is pressed.")


class AnswerReply(BaseModel):
    kind: Literal["answer"]
    faq_id: str
    question: str
    text: str
    links: list[Link]


class SuggestionsReply(BaseModel):
    kind: Literal["suggestions"]
    text: str
    items: list[Suggestion]


class TextReply(BaseModel):
    kind: Literal["text"]
    text: str


class ButtonsReply(BaseModel):
    kind: Literal["buttons"]
    text: str
    buttons: list[ButtonOut]


ReplyOut = Annotated[AnswerReply | SuggestionsReply | TextReply | ButtonsReply, Field(discriminator="kind")]


class ChatResponse(BaseModel):
    session_id: str
    replies: list[ReplyOut]
    last_message_id: int = Field(description="Ask /api/chat/{session_id}/messages?after= this for later messages.")


class StoredMessage(BaseModel):
    id: int
    sender: Literal["member", "assistant", "staff"] = Field(alias="from")
    reply: ReplyOut


class MessagesResponse(BaseModel):
    session_id: str
    messages: list[StoredMessage]


class ErrorResponse(BaseModel):
    error: str = Field(description="A stable code: invalid_request, text_too_long, rate_limited, unavailable, …")
    message: str = Field(description="Japanese, to show the member as it is.")
