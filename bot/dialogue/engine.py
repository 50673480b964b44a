"""The conversation engine: the one entry point every channel calls.

``Engine.handle(channel, user_ref, text=..., action=...)`` runs one turn inside one database
transaction: it loads the conversation (its state lives in the database, so any worker can serve
it and a restart loses nothing), routes the message to the running flow, an intent or the FAQ,
records both sides of the exchange, and returns replies. Mails queued during the turn go out
after the commit, so a mail goes out only for a change that was stored, and never inside the turn:
the engine only calls ``on_mail_queued`` (which wakes a delivery worker), so no turn waits on SMTP
and a turn that queued a mail looks, to the member and on the clock, like one that did not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.attempt_limits import AttemptLimits
from bot.clock import utc
from bot.dialogue.flow import FlowContext, Handler, Step
from bot.dialogue.identity_flow import IdentityFlow
from bot.dialogue.intents import IntentIndex, IntentMatch
from bot.dialogue.replies import Reply, buttons, text
from bot.errors import ServiceUnavailableError
from bot.faq.index import FaqIndex
from bot.faq.matcher import Outcome, match
from bot.identity import identity_fresh, parse_email
from bot.mail import Mailer
from bot.messages import message
from bot.settings import Settings
from bot.storage import audit
from bot.storage.models import Conversation, Feedback, Member, Message, OutboxMail
from bot.text.normalize import is_english

log = logging.getLogger(__name__)

CHANNELS = frozenset({"terminal", "web", "slack"})
MAX_MESSAGE_CHARS = 4000
MAX_USER_REF = 200
START = "start:"
FAQ = "faq:"
FEEDBACK = "feedback:"
CANCEL = "cancel"
DIGRESS = "digress:answer"
RESUME = "digress:resume"
# A typed cancel must match a cancel phrase closely, with no word the cancel examples lack:
# free-text steps must not lose a message that merely mentions cancelling ("キャンセル待ちは?").
CANCEL_THRESHOLD = 0.8


Next = tuple[dict[str, Any], list[Reply]]
"""A routing step's result: the conversation's next state and the replies so far."""


class EngineInputError(ValueError):
    """A channel called the engine wrongly (unknown channel, missing user reference)."""


QUESTION_FORMS = ("?", "？", "ですか", "ますか", "でしょうか", "教えて", "ください", "下さい", "いくら", "どこ", "いつ",
                  "何", "なぜ", "知りたい", "どうすれ", "どうしたら", "どうやって", "どうなり", "どうなって")
"""What makes typed text a question even when the FAQ does not know it (「年会費はいくらですか」): at
a step that waits for an address or a code it is then no mistyped address."""


def _reads_as_question(said: str) -> bool:
    return any(form in said for form in QUESTION_FORMS)


@dataclass(frozen=True)
class Form:
    """A filled-in form a channel collected in one go (the widget's inquiry form): the handler to
    start, its slots, and the member's words to record in the transcript."""

    handler: str
    slots: dict[str, Any]
    said: str


@dataclass
class Turn:
    """What one turn produced: replies, the outbox rows it queued, and the id of its last stored
    message (a channel that later asks for "what came after" starts there)."""

    replies: list[Reply] = field(default_factory=list)
    mails: list[OutboxMail] = field(default_factory=list)
    last_message_id: int = 0
    private: bool = False
    """A flow (identity or a self-service action) ran in this turn: its replies concern the member's
    own account, so a channel others can read (a Slack thread) must show them somewhere private."""


class Engine:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        faq: FaqIndex,
        intents: IntentIndex,
        mailer: Mailer,
        handlers: dict[str, Handler],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_mail_queued: Callable[[], None] = lambda: None,
        serialize_turns: bool = False,
        attempt_limits: AttemptLimits | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.faq = faq
        self.intents = intents
        self.mailer = mailer
        self.handlers = handlers
        self.identity = IdentityFlow(attempt_limits or AttemptLimits(settings))
        self.clock = clock
        self.on_mail_queued = on_mail_queued
        # SQLite ignores FOR UPDATE and lets one writer in at a time: turns of one process queue
        # here instead of failing to upgrade a read snapshot or sleeping in SQLite's busy handler.
        self._turn_lock: AbstractContextManager[object] = threading.Lock() if serialize_turns else nullcontext()

    def handle(self, channel: str, user_ref: str, text: str | None = None, action: str | None = None) -> list[Reply]:
        """One turn. Never raises for member input; ``ServiceUnavailableError`` when the database
        fails (nothing of the turn is stored, so the member may simply try again)."""
        return self.run(channel, user_ref, text=text, action=action).replies

    def submit(self, channel: str, user_ref: str, form: Form) -> Turn:
        """One turn that starts ``form.handler`` with the form's slots, as if the member had said them."""
        if form.handler not in self.handlers:
            raise EngineInputError(f"unknown handler {form.handler!r}")
        return self.run(channel, user_ref, text=form.said, form=form)

    def run(self, channel: str, user_ref: str, text: str | None = None, action: str | None = None,
            form: Form | None = None) -> Turn:
        """``handle`` with the whole ``Turn`` (replies and the id of the last stored message)."""
        if channel not in CHANNELS:
            raise EngineInputError(f"unknown channel {channel!r} (known: {', '.join(sorted(CHANNELS))})")
        if not user_ref or len(user_ref) > MAX_USER_REF:
            raise EngineInputError("user_ref must be 1 to 200 characters")
        if _unstorable(user_ref):
            raise EngineInputError("user_ref must not contain control characters or lone surrogates")
        text, action = _storable(text), _storable(action)
        notes: list[Reply] = []
        if text is not None and len(text) > MAX_MESSAGE_CHARS:
            text = text[:MAX_MESSAGE_CHARS]
            notes.append(_text("message_too_long", limit=MAX_MESSAGE_CHARS))
        try:
            turn = self._run_turn(channel, user_ref, text, action, form)
        except SQLAlchemyError as exc:
            log.error("turn failed on the database (channel=%s): %s", channel, type(exc).__name__)
            raise ServiceUnavailableError("the database did not answer; the turn was not stored") from exc
        if turn.mails:
            self.on_mail_queued()
        turn.replies = notes + turn.replies
        return turn

    def assume_identity(self, channel: str, user_ref: str, email: str, operator: str) -> None:
        """Treat ``email`` as verified for this conversation: an operator's decision, audited as theirs.

        Only for the terminal's ``--as`` on the demo database or with ``--trust-identity``. The
        operator (``operator:NAME``) is kept on the conversation (``assumed_by``), so that whatever is
        done in it afterwards is recorded as the operator's, on the member's behalf (``FlowContext.actor``),
        never as the member's own.
        """
        name = operator.removeprefix("operator:")
        if not operator.startswith("operator:") or not name or len(operator) > 60 or _unstorable(name) \
                or any(char.isspace() for char in name):
            raise ValueError("operator must be 'operator:NAME', NAME without blanks, at most 60 characters")
        address = parse_email(email)
        if address is None:
            raise ValueError(f"not an e-mail address: {email!r}")
        with self.sessions.begin() as session:
            conversation = self._conversation(session, channel, user_ref)
            conversation.verified_email = address.lower()
            conversation.verified_at = None  # the operator's word lasts from its first use (IdentityFlow)
            conversation.member_id = None
            conversation.assumed_by = operator
            audit.record(session, actor=operator, channel=channel, action="identity_assumed",
                         entity="conversation", entity_id=conversation.id, after={"email": conversation.verified_email})

    def _run_turn(self, channel: str, user_ref: str, text: str | None, action: str | None,
                  form: Form | None) -> Turn:
        with self._turn_lock:
            try:
                return self._turn_once(channel, user_ref, text, action, form)
            except IntegrityError:
                # Two first messages raced to create the conversation row; the loser now finds it.
                return self._turn_once(channel, user_ref, text, action, form)

    def _turn_once(self, channel: str, user_ref: str, text: str | None, action: str | None,
                   form: Form | None) -> Turn:
        with self.sessions.begin() as session:
            queued: list[OutboxMail] = []
            event.listen(session, "transient_to_pending", _collect_mail(queued))
            conversation = self._conversation(session, channel, user_ref)
            ctx = self._context(session, conversation)
            session.add(Message(conversation_id=conversation.id, direction="in",
                                text=text if text is not None else f"[{action}]",
                                payload={"action": action} if action is not None else None))
            if form is not None:
                turn = self._save(ctx, *self._start(ctx, form.handler, form.slots, []))
            else:
                turn = self._route(ctx, text, action)
            turn.mails = queued
            stored = [Message(conversation_id=conversation.id, direction="out", text=reply.text,
                              payload=reply.as_dict()) for reply in turn.replies]
            session.add_all(stored)
            session.flush()
            turn.last_message_id = max((m.id for m in stored), default=0)
            return turn

    def _conversation(self, session: Session, channel: str, user_ref: str) -> Conversation:
        """The conversation row, locked for this turn (two workers never interleave one member's turns)."""
        query = select(Conversation).where(Conversation.channel == channel, Conversation.user_ref == user_ref)
        conversation = session.scalars(query.with_for_update()).one_or_none()
        if conversation is None:
            conversation = Conversation(channel=channel, user_ref=user_ref, state={})
            session.add(conversation)
            session.flush()
        return conversation

    def _context(self, session: Session, conversation: Conversation) -> FlowContext:
        now = self.clock()
        if conversation.member_id and not identity_fresh(conversation, now, self.settings):
            # The proof of identity has lapsed (``identity_minutes``): this conversation no longer acts
            # for the member until they prove it again; a flow begun as the member asks first (_continue).
            conversation.member_id = None
            conversation.verified_email = None
            conversation.verified_at = None
        member = session.get(Member, conversation.member_id) if conversation.member_id else None
        return FlowContext(
            session=session, settings=self.settings, mailer=self.mailer, conversation=conversation,
            channel=conversation.channel, user_ref=conversation.user_ref, now=now, member=member,
        )

    # --- routing

    def _route(self, ctx: FlowContext, text: str | None, action: str | None) -> Turn:
        state = dict(ctx.conversation.state or {})
        replies: list[Reply] = []
        if state.get("flow") and self._expired(ctx):
            state = {}
            replies.append(_text("flow_expired"))
        if action == CANCEL or (text is not None and state.get("flow") and self._is_cancel(text)):
            replies.append(_text("cancelled" if state.get("flow") else "nothing_to_cancel"))
            return self._save(ctx, {}, replies)
        if action is not None:
            return self._save(ctx, *self._on_action(ctx, state, action, replies))
        if state.get("flow"):
            return self._save(ctx, *self._continue(ctx, state, text, None, replies))
        return self._save(ctx, *self._on_text(ctx, state, text or "", replies))

    def _on_action(self, ctx: FlowContext, state: dict[str, Any], action: str, replies: list[Reply]) -> Next:
        if action in (DIGRESS, RESUME):
            return self._digression_choice(ctx, state, action, replies)
        if action.startswith(START) and action[len(START):] in self.handlers:
            slots = {"question": state.get("last_question", "")}
            return self._start(ctx, action[len(START):], slots, replies)
        if action.startswith(FAQ) and self.faq.corpus.get(action[len(FAQ):]):
            return state, replies + self._answer(action[len(FAQ):])
        if action.startswith(FEEDBACK):
            return state, replies + self._feedback(ctx, action[len(FEEDBACK):])
        if state.get("flow"):
            return self._continue(ctx, state, None, action, replies)
        return state, replies + [_text("stale_button")]

    def _on_text(self, ctx: FlowContext, state: dict[str, Any], said: str, replies: list[Reply]) -> Next:
        intent = self.intents.detect(said) if said.strip() else None
        if intent and intent.name in ("greeting", "thanks"):
            return state, replies + [_text(intent.name)]
        if intent and _is_cancel_phrase(intent):
            return state, replies + [_text("nothing_to_cancel")]
        if intent and intent.name == "human":
            return self._start(ctx, "secretariat_request", {"kind": "inquiry"}, replies)
        result = match(self.faq, said)
        if intent and intent.handler:
            shown = self._entry_for_action(intent.handler, result.ranked[:1])
            if shown is not None:  # how to do it on マイページ, and the offer to do it here
                return {}, replies + self._answer(shown)
            return self._start(ctx, intent.handler, {}, replies)
        note = [_text("english_note")] if is_english(said) else []
        if result.outcome is Outcome.ANSWER and result.faq_id:
            also = [self._suggestions(result.also, "also_intro")] if result.also else []
            return {}, replies + self._answer(result.faq_id) + also + note
        if result.outcome is Outcome.SUGGEST:  # a guess, so the way to a person stays one tap away
            return {"last_question": said}, replies + [self._suggestions(result.suggestions),
                                                       _to_secretariat("suggestions_none_fit")] + note
        if not said.strip():
            return {}, replies + [_text("empty_question")]
        return {"last_question": said}, replies + [_to_secretariat("fallback_offer")]

    def _start(self, ctx: FlowContext, name: str, slots: dict[str, Any], replies: list[Reply]) -> Next:
        ctx.private = True
        handler = self.handlers[name]
        if handler.needs_identity and ctx.member is None:
            return self._identified(ctx, self.identity.start(ctx, {"then": name, "slots": slots}), replies)
        return self._after(ctx, name, handler.start(ctx, slots), replies, slots)

    def _identified(self, ctx: FlowContext, step: Step, replies: list[Reply]) -> Next:
        """After an identity step: start the waiting handler once the member is known."""
        if step.done and ctx.member is not None:
            then, slots = step.extras["then"], step.extras["slots"]
            return self._after(ctx, then, self.handlers[then].start(ctx, slots), replies + step.replies, slots)
        return self._after(ctx, "identify", step, replies)

    def _continue(self, ctx: FlowContext, state: dict[str, Any], said: str | None, action: str | None,
                  replies: list[Reply]) -> Next:
        ctx.private = True
        state = {key: value for key, value in state.items() if key != "digression"}
        if said is not None and self._is_new_question(state, said):
            return self._offer_digression(state, said, replies)
        name = state["flow"]
        if name == "identify":
            return self._identified(ctx, self.identity.resume(ctx, state["data"], said, action), replies)
        slots = state.get("slots", {})
        if state.get("member") is not None and (ctx.member is None or ctx.member.id != state["member"]):
            # Begun as a verified member whose proof has lapsed since: prove it again, then begin
            # afresh, so that no change is applied on an identity older than ``identity_minutes``.
            note = _text("identity_expired", minutes=self.settings.identity_minutes)
            return self._identified(ctx, self.identity.start(ctx, {"then": name, "slots": slots}), replies + [note])
        return self._after(ctx, name, self.handlers[name].resume(ctx, state["data"], said, action), replies, slots)

    def _after(self, ctx: FlowContext, name: str, step: Step, replies: list[Reply],
               slots: dict[str, Any] | None = None) -> Next:
        if step.extras.get("identify") and ctx.member is None:
            data = {"then": name, "slots": step.extras.get("slots", {})}
            return self._identified(ctx, self.identity.start(ctx, data), replies + step.replies)
        if step.done or step.state is None:
            return {}, replies + step.replies
        prompt = [reply.as_dict() for reply in step.replies] if step.replies else None
        if ctx.member is not None and _acts_for_member(self.handlers.get(name)):
            # The flow acts for this member: _continue checks that the proof is still fresh.
            return ({"flow": name, "data": step.state, "member": ctx.member.id, "slots": slots or {},
                     "prompt": prompt}, replies + step.replies)
        return {"flow": name, "data": step.state, "prompt": prompt}, replies + step.replies

    # --- a new question while a flow waits (a digression)

    def _is_new_question(self, state: dict[str, Any], said: str) -> bool:
        """Whether typed text, at a step that waits for an address, a code or a choice, is rather a
        new question (an action or a FAQ the member asks about). Free-text steps (an inquiry's
        details, a withdrawal's reason) take whatever is typed."""
        name, data = state["flow"], state.get("data") or {}
        handler = self.handlers.get(str(data.get("then")) if name == "identify" else name)
        if name != "identify" and data.get("step") in getattr(handler, "free_text_steps", frozenset()):
            return False
        if "@" in said or sum(ch.isdigit() for ch in said) >= 4 or len(said.strip()) < 4:
            return False  # an attempt at the address or the code, however mistyped
        intent = self.intents.detect(said)
        if intent is not None and (intent.name == "human" or (intent.handler and handler is not None
                                                               and intent.handler != handler.name)):
            return True
        result = match(self.faq, said)
        if result.outcome is Outcome.FALLBACK or not result.ranked:
            return _reads_as_question(said)  # one the FAQ does not answer goes to the secretariat, not lost
        entry = self.faq.corpus.get(result.ranked[0])
        return entry is None or handler is None or entry.action != handler.name  # not about this flow itself

    def _offer_digression(self, state: dict[str, Any], said: str, replies: list[Reply]) -> Next:
        label = self._flow_label(state)
        offer = buttons(message("digression_offer", flow=label), (message("digression_answer_button"), DIGRESS),
                        (message("digression_continue_button", flow=label), RESUME))
        return {**state, "digression": said}, replies + [offer]

    def _digression_choice(self, ctx: FlowContext, state: dict[str, Any], action: str, replies: list[Reply]) -> Next:
        paused = state.get("paused") if not state.get("flow") else None
        if action == RESUME and (state.get("flow") or paused):
            flow = {k: v for k, v in (paused or state).items() if k != "digression"}
            note = _text("flow_resumed", flow=self._flow_label(flow))
            return flow, replies + [note] + [Reply.from_dict(r) for r in flow.get("prompt") or []]
        said = state.get("digression")
        if action != DIGRESS or not state.get("flow") or not isinstance(said, str):
            return state, replies + [_text("stale_button")]
        flow = {k: v for k, v in state.items() if k != "digression"}
        after, answered = self._on_text(ctx, {}, said, replies)
        if after.get("flow"):
            return after, answered  # the question began another flow; the paused one is dropped
        resume = buttons(message("resume_offer", flow=self._flow_label(flow)),
                         (message("resume_button"), RESUME))
        return {**after, "paused": flow}, answered + [resume]

    def _flow_label(self, state: dict[str, Any]) -> str:
        name = state.get("flow")
        if name == "identify":
            name = (state.get("data") or {}).get("then")
        return message(f"flow_label_{name}") if name in self.handlers else message("flow_label_other")

    def _entry_for_action(self, handler: str, ranked: list[str]) -> str | None:
        """The FAQ entry that explains an action: the best match if it offers that action, else the
        one entry that does; None when several do and none matched (the flow starts directly)."""
        for faq_id in ranked:
            entry = self.faq.corpus.get(faq_id)
            if entry is not None and entry.action == handler:
                return entry.id
        offering = [entry.id for entry in self.faq.corpus.entries if entry.action == handler]
        return offering[0] if len(offering) == 1 else None

    def _save(self, ctx: FlowContext, state: dict[str, Any], replies: list[Reply]) -> Turn:
        conversation = ctx.conversation
        conversation.state = state
        conversation.state_updated_at = ctx.now
        conversation.version = (conversation.version or 0) + 1
        return Turn(replies=replies, private=ctx.private or bool(state.get("flow")))

    def _expired(self, ctx: FlowContext) -> bool:
        return ctx.now - utc(ctx.conversation.state_updated_at) > timedelta(minutes=self.settings.conversation_timeout_minutes)

    def _is_cancel(self, said: str) -> bool:
        """Only a message that *is* a cancel phrase cancels; "キャンセル料は?" is a question."""
        intent = self.intents.detect(said)
        return intent is not None and _is_cancel_phrase(intent)

    # --- FAQ replies

    def _answer(self, faq_id: str) -> list[Reply]:
        entry = self.faq.corpus.get(faq_id)
        assert entry is not None
        body, links = self.faq.corpus.render_answer(entry)
        replies = [Reply("answer", text=body, faq_id=entry.id, question=entry.question,
                         links=[{"label": link.label, "text": link.text, "url": link.url} for link in links])]
        if entry.action and entry.action in self.handlers:
            label = message(f"action_button_{entry.action}")
            replies.append(buttons(message("action_offer"), (label, f"{START}{entry.action}")))
        return replies

    def _suggestions(self, faq_ids: list[str], intro: str = "suggestions_intro") -> Reply:
        items = []
        for faq_id in faq_ids:
            entry = self.faq.corpus.get(faq_id)
            if entry is not None:
                items.append({"faq_id": entry.id, "question": entry.question})
        return Reply("suggestions", text=message(intro), items=items)

    def _feedback(self, ctx: FlowContext, value: str) -> list[Reply]:
        """``feedback:<faq_id>:up|down``, sent by a channel's 👍/👎 under an answer."""
        faq_id, _, verdict = value.rpartition(":")
        if self.faq.corpus.get(faq_id) is None or verdict not in ("up", "down"):
            return [_text("stale_button")]
        ctx.session.add(Feedback(conversation_id=ctx.conversation.id, faq_id=faq_id, helpful=verdict == "up"))
        return [_text("feedback_thanks")]


def _storable(value: str | None) -> str | None:
    """Member input as the database can store it: surrogate pairs joined, lone surrogates replaced
    (U+FFFD), C0 control characters other than tab and line breaks dropped (PostgreSQL refuses NUL,
    and UTF-8 has no lone surrogates; both used to fail the turn)."""
    if value is None:
        return None
    value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return "".join(ch for ch in value if ch in "\t\n\r" or not (ord(ch) < 0x20 or ord(ch) == 0x7F))


def _unstorable(value: str) -> bool:
    return _storable(value) != value or any(ord(ch) < 0x20 for ch in value)


def _is_cancel_phrase(intent: IntentMatch) -> bool:
    return intent.name == "cancel" and intent.covered and intent.score >= CANCEL_THRESHOLD


def _acts_for_member(handler: Handler | None) -> bool:
    """Whether a flow run by a verified member acts for them (a handler says ``acts_for_member =
    False`` when it never uses the member, e.g. a password reset, which anyone may ask for)."""
    return handler is not None and bool(getattr(handler, "acts_for_member", True))


def _collect_mail(queued: list[OutboxMail]) -> Callable[[Session, object], None]:
    def collect(_session: Session, obj: object) -> None:
        if isinstance(obj, OutboxMail):
            queued.append(obj)

    return collect


def _text(key: str, **values: object) -> Reply:
    return text(message(key, **values))


def _to_secretariat(key: str) -> Reply:
    """The message ``key`` with the button that hands the member's last question to the secretariat."""
    return buttons(message(key), (message("to_secretariat_button"), f"{START}secretariat_request"))
