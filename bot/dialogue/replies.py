"""What the assistant says, in shapes every channel can render (terminal, web, Slack)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Button:
    label: str
    action: str


@dataclass(frozen=True)
class Reply:
    """One reply. ``kind``: "text", "answer", "suggestions" or "buttons"."""

    kind: str
    text: str = ""
    faq_id: str | None = None
    question: str | None = None
    links: list[dict[str, str]] = field(default_factory=list)
    items: list[dict[str, str]] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The wire shape: only the fields that belong to this kind."""
        data = asdict(self)
        keep = {
            "text": ("kind", "text"),
            "answer": ("kind", "faq_id", "question", "text", "links"),
            "suggestions": ("kind", "text", "items"),
            "buttons": ("kind", "text", "buttons"),
        }[self.kind]
        return {key: data[key] for key in keep}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        """A reply back from its wire shape (a flow's prompt kept with the conversation's state)."""
        shown = [Button(str(b.get("label", "")), str(b.get("action", ""))) for b in data.get("buttons") or []]
        return cls(kind=str(data.get("kind", "text")), text=str(data.get("text", "")), faq_id=data.get("faq_id"),
                   question=data.get("question"), links=list(data.get("links") or []),
                   items=list(data.get("items") or []), buttons=shown)


def text(message: str) -> Reply:
    return Reply("text", text=message)


def buttons(message: str, *choices: tuple[str, str]) -> Reply:
    return Reply("buttons", text=message, buttons=[Button(label, action) for label, action in choices])
