/*
 * JSUGアシスタント: the chat widget of the association's pages.
 *
 * Embed it with one line; the API is the origin (and folder) this script is loaded from, or the
 * script tag's data-api-base:
 *   <script src="https://assistant.example.org/widget.js" defer></script>
 *
 * Plain JavaScript: no build step, no framework, nothing fetched from anywhere else. Everything lives
 * in an open shadow root on one host element, so the page's CSS cannot break the widget and the
 * widget's CSS (a constructed stylesheet, allowed under a strict style-src) cannot touch the page.
 * Every text, the member's, the FAQ's and the secretariat's, is set with textContent, never as HTML;
 * links come only from an answer's `links` (http, https and mailto only).
 *
 * API: POST /api/chat {session_id, text | action}, POST /api/inquiry {session_id, name, email,
 * question}, GET /api/chat/{session_id}/messages?after=N. The session id is kept in localStorage
 * and replaced by whatever the server returns, so a reload restores the conversation (after=0).
 * Later messages (the secretariat's replies) arrive by POLLING that GET every few seconds while
 * the panel is open and the page is visible: there is no SSE or WebSocket.
 */
(() => {
  "use strict";
  if (window.__jsugChatWidget) return;
  window.__jsugChatWidget = true;

  const script = document.currentScript || document.querySelector('script[src$="/widget.js"]');
  const BASE = (() => {
    const given = script && script.dataset.apiBase;
    try {
      if (given) return new URL(given.replace(/\/*$/, "/"), location.href).href;
      if (script && script.src) return new URL(".", script.src).href;
    } catch (_) { /* a malformed data-api-base: use the page's origin */ }
    return new URL("/", location.href).href;
  })();
  const SESSION_KEY = "jsug-chat-session";
  const OPEN_KEY = "jsug-chat-open";
  const POLL_MS = 4000;
  const TIMEOUT_MS = 20000;
  const FORM_ACTION = "start:secretariat_request";
  const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

  const T = {
    launcher: "チャットで質問",
    title: "JSUGアシスタント",
    welcome: "JSUGアシスタントです。JSUGや会員登録について、お気軽にご質問ください。",
    label: "メッセージ",
    placeholder: "ご質問を入力してください",
    keys: "Enterキーで送信、Shift+Enterキーで改行します。",
    send: "送信",
    menu: "メニュー",
    close: "閉じる",
    newChat: "新しい会話",
    newChatDone: "新しい会話を始めました。",
    contact: "事務局に問い合わせる",
    staff: "事務局より",
    me: "あなた: ",
    bot: "アシスタント: ",
    log: "会話",
    helpful: "この回答は役に立ちましたか?",
    up: "役に立った",
    down: "役に立たなかった",
    newTab: "新しいタブで開きます",
    failed: "送信できませんでした",
    retry: "もう一度送信",
    offline: "通信できませんでした。接続をご確認のうえ、もう一度お試しください。",
    busy: "申し訳ありません。ただいま混み合っています。しばらくしてからもう一度お試しください。",
    wait: (s) => `送信が多すぎます。${s}秒ほど待ってからもう一度お試しください。`,
    formIntro: "事務局の担当者がお答えします。回答はこのチャットでお知らせします。",
    name: "お名前",
    email: "メールアドレス",
    question: "お問い合わせ内容",
    required: "(必須)",
    submit: "送信する",
    sending: "送信中…",
    back: "チャットに戻る",
    noName: "お名前を入力してください。",
    noEmail: "メールアドレスを入力してください。",
    badEmail: "メールアドレスの形式が正しくありません(例: taro@example.com)。",
    noQuestion: "お問い合わせ内容を入力してください。",
    shortQuestion: "もう少し詳しくご入力ください。",
    longQuestion: "2,000文字以内でご入力ください。",
  };

  const CSS = `
:host { all: initial; font: 15px/1.6 system-ui, -apple-system, "Hiragino Sans", "Hiragino Kaku Gothic ProN", "Noto Sans JP", "Yu Gothic", Meiryo, sans-serif; color: #1a1a1a; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
button, input, textarea { font: inherit; color: inherit; }
button { cursor: pointer; }
.sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.launcher { position: fixed; right: 16px; bottom: 16px; z-index: 2147483000; display: inline-flex; align-items: center; gap: 6px; min-height: 48px; padding: 0 20px; border: 2px solid #fff; border-radius: 999px; background: #0a3d62; color: #fff; font-weight: 700; box-shadow: 0 4px 14px rgba(0,0,0,.3); }
.launcher:hover { background: #0d4f80; }
.panel { position: fixed; right: 16px; bottom: 80px; z-index: 2147483001; width: min(400px, calc(100vw - 32px)); height: min(640px, calc(100vh - 100px)); display: flex; flex-direction: column; background: #fff; border: 1px solid #b8c0cc; border-radius: 12px; box-shadow: 0 10px 40px rgba(0,0,0,.3); overflow: hidden; }
@media (max-width: 480px), (max-height: 560px) {
  .panel { inset: 0; width: auto; height: auto; border: 0; border-radius: 0; }
  .panel:not([hidden]) ~ .launcher { display: none; }
  .composer { padding-bottom: max(10px, env(safe-area-inset-bottom)); }
}
header { position: relative; display: flex; align-items: center; gap: 4px; padding: 6px 6px 6px 16px; background: #0a3d62; color: #fff; }
h2 { flex: 1; margin: 0; font-size: 16px; font-weight: 700; }
.icon { min-width: 44px; min-height: 44px; padding: 0 10px; border: 0; border-radius: 8px; background: transparent; color: #fff; font-size: 15px; }
.icon:hover { background: rgba(255,255,255,.18); }
.menu { position: absolute; top: calc(100% - 4px); right: 8px; z-index: 2; min-width: 220px; padding: 6px 0; background: #fff; color: #1a1a1a; border: 1px solid #b8c0cc; border-radius: 10px; box-shadow: 0 6px 20px rgba(0,0,0,.2); }
.menu button { display: block; width: 100%; min-height: 44px; padding: 8px 16px; border: 0; background: #fff; text-align: left; }
.menu button:hover { background: #e6eef6; }
.log { position: relative; flex: 1; overflow-y: auto; overscroll-behavior: contain; display: flex; flex-direction: column; gap: 10px; padding: 16px 12px; background: #f3f5f8; }
.msg { max-width: 90%; padding: 10px 14px; border-radius: 14px; overflow-wrap: anywhere; }
.msg p { margin: 0; }
.text { white-space: pre-wrap; }
.bot { align-self: flex-start; background: #fff; border: 1px solid #cfd5dd; border-bottom-left-radius: 4px; }
.member { align-self: flex-end; background: #0a3d62; color: #fff; border-bottom-right-radius: 4px; }
.staff { align-self: flex-start; background: #fff7e8; border: 1px solid #e3a857; border-left: 5px solid #a35200; }
.from { font-size: 13px; font-weight: 700; color: #7d3f00; }
.q { font-weight: 700; margin-bottom: 6px !important; }
a { color: #0b57d0; text-decoration: underline; text-underline-offset: 2px; }
a::after { content: "↗" / ""; font-size: 12px; }
.links { margin: 8px 0 0; padding-left: 20px; }
.choices { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 10px; }
.choices.list { flex-direction: column; align-items: stretch; }
.choice { min-height: 40px; padding: 6px 14px; border: 2px solid #0a3d62; border-radius: 20px; background: #fff; color: #0a3d62; text-align: left; }
.list .choice { border-radius: 10px; }
.choice:hover:not(:disabled) { background: #e6eef6; }
.choice:disabled { cursor: default; border-color: #a3abb5; background: #eef0f3; color: #555e69; }
.choice.chosen, .choice.chosen:disabled { border-color: #0a3d62; background: #0a3d62; color: #fff; }
.feedback { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; margin-top: 10px; padding-top: 8px; border-top: 1px solid #e1e5ea; font-size: 13px; color: #49525e; }
.feedback .choices { margin: 0; gap: 6px; }
.feedback .choice { min-width: 44px; min-height: 36px; padding: 2px 10px; font-size: 16px; text-align: center; }
.notice { align-self: stretch; padding: 10px 14px; border: 1px solid #c5221f; border-radius: 10px; background: #fdecea; color: #6d1410; }
.notice strong { display: block; }
.notice p { margin: 4px 0 0; }
.notice .choice { margin-top: 8px; }
.typing { align-self: flex-start; display: flex; gap: 5px; padding: 14px 16px; background: #fff; border: 1px solid #cfd5dd; border-radius: 14px; }
.typing span { width: 8px; height: 8px; border-radius: 50%; background: #555e69; animation: jsug-dot 1.2s infinite ease-in-out; }
.typing span:nth-child(2) { animation-delay: .2s; }
.typing span:nth-child(3) { animation-delay: .4s; }
@keyframes jsug-dot { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }
@media (prefers-reduced-motion: reduce) { .typing span { animation: none; } }
.composer { display: flex; align-items: flex-end; gap: 8px; padding: 10px; border-top: 1px solid #cfd5dd; background: #fff; }
textarea, input { width: 100%; min-height: 44px; padding: 9px 12px; border: 2px solid #69727d; border-radius: 10px; background: #fff; font-size: 16px; line-height: 1.5; }
.composer textarea { flex: 1; max-height: 140px; resize: none; }
::placeholder { color: #5c6570; opacity: 1; }
.primary { min-height: 44px; padding: 0 18px; border: 2px solid #0a3d62; border-radius: 10px; background: #0a3d62; color: #fff; font-weight: 700; white-space: nowrap; }
.primary:hover:not(:disabled) { background: #0d4f80; }
.primary[aria-disabled="true"] { cursor: progress; }
.inquiry { flex: 1; overflow-y: auto; padding: 16px; background: #fff; }
h3 { margin: 0 0 4px; font-size: 17px; }
.intro { margin: 0 0 14px; color: #3d4550; }
.field { margin-bottom: 14px; }
.field label { display: block; margin-bottom: 4px; font-weight: 700; }
.field textarea { min-height: 120px; resize: vertical; }
.error { margin: 4px 0 0; color: #b3261e; font-size: 14px; font-weight: 700; }
.error:empty { display: none; }
[aria-invalid="true"] { border-color: #b3261e; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; }
.actions .choice { border-radius: 10px; }
.inquiry .notice { margin-bottom: 14px; }
.panel.form-open .log, .panel.form-open .composer { display: none; }
@media print { :host { display: none; } }
:host :focus-visible { outline: 2px solid transparent; box-shadow: 0 0 0 2px #fff, 0 0 0 5px #0b57d0; }
`;

  // --- small helpers --------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child); // strings become text nodes
    return node;
  }

  function stored(area, key, value) {
    try {
      const storage = window[area];
      if (value === undefined) return storage.getItem(key);
      if (value === null) storage.removeItem(key);
      else storage.setItem(key, value);
    } catch (_) { /* storage blocked: the conversation lasts as long as the page */ }
    return null;
  }

  function safeUrl(value) {
    try {
      const url = new URL(value);
      return ["https:", "http:", "mailto:"].includes(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // --- the DOM ----------------------------------------------------------------------------------

  const host = el("div", { id: "jsug-chat" });
  const root = host.attachShadow({ mode: "open" });
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.append(el("style", { text: CSS }));
  }

  const launcher = el("button", { type: "button", class: "launcher", "aria-expanded": "false", "aria-controls": "panel" },
    el("span", { "aria-hidden": "true", text: "💬" }), T.launcher);
  const menuButton = el("button", { type: "button", class: "icon", "aria-expanded": "false", "aria-controls": "menu" },
    el("span", { "aria-hidden": "true", text: "⋯ " }), T.menu);
  const closeButton = el("button", { type: "button", class: "icon", "aria-label": T.close, text: "✕" });
  const menu = el("div", { id: "menu", class: "menu", hidden: true },
    el("button", { type: "button", text: T.newChat, onclick: newConversation }),
    el("button", { type: "button", text: T.contact, onclick: () => openInquiry("") }));
  const log = el("div", { class: "log", role: "region", "aria-label": T.log, tabindex: "0" });
  const typing = el("div", { class: "typing", hidden: true, "aria-hidden": "true" }, el("span"), el("span"), el("span"));
  const live = el("div", { class: "sr-only", "aria-live": "polite" });
  const input = el("textarea", { id: "input", rows: "1", placeholder: T.placeholder, enterkeyhint: "send",
    "aria-describedby": "keys" });
  const composer = el("form", { class: "composer", novalidate: true },
    el("label", { for: "input", class: "sr-only", text: T.label }), el("span", { id: "keys", class: "sr-only", text: T.keys }),
    input,
    el("button", { type: "submit", class: "primary", text: T.send }));

  function field(name, label, tag, attrs) {
    const control = el(tag, { id: "f-" + name, name, "aria-describedby": "f-" + name + "-error", ...attrs });
    const error = el("p", { id: "f-" + name + "-error", class: "error" });
    const wrap = el("div", { class: "field" }, el("label", { for: control.id, text: label + T.required }), control, error);
    return { wrap, control, error };
  }
  const fName = field("name", T.name, "input", { type: "text", autocomplete: "name", maxlength: "100" });
  const fEmail = field("email", T.email, "input", { type: "email", autocomplete: "email", inputmode: "email", maxlength: "320" });
  const fQuestion = field("question", T.question, "textarea", { rows: "5" });
  const formProblem = el("div");
  const submitButton = el("button", { type: "submit", class: "primary", text: T.submit });
  const inquiry = el("form", { class: "inquiry", hidden: true, novalidate: true, "aria-labelledby": "form-title" },
    el("h3", { id: "form-title", text: T.contact }), el("p", { class: "intro", text: T.formIntro }),
    fName.wrap, fEmail.wrap, fQuestion.wrap, formProblem,
    el("div", { class: "actions" }, submitButton,
      el("button", { type: "button", class: "choice", text: T.back, onclick: () => closeInquiry(true) })));
  const panel = el("section", { id: "panel", class: "panel", role: "dialog", "aria-labelledby": "title", hidden: true },
    el("header", {}, el("h2", { id: "title", text: T.title }), menuButton, closeButton, menu),
    log, inquiry, composer, live);
  root.append(panel, launcher);

  // --- state ------------------------------------------------------------------------------------

  let session = stored("localStorage", SESSION_KEY);
  let lastId = 0;          // the highest message id shown; polls ask for what came after it
  let generation = 0;      // bumped by every send and reset: older answers in flight are dropped
  let busy = false;
  let open = false;
  let restoring = null;    // the promise of the history request (after=0), once per page
  let pollTimer = 0;
  let lastTyped = "";
  let notice = null;
  let greeting = null;     // the local welcome, replaced by a restored conversation

  // --- talking to the API -----------------------------------------------------------------------

  async function call(path, init) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(new URL(path, BASE).href, { ...init, credentials: "omit", signal: controller.signal });
      let data = null;
      try { data = await response.json(); } catch (_) { /* not JSON */ }
      return { status: response.status, ok: response.ok, data: data || {}, retryAfter: response.headers.get("Retry-After") };
    } catch (_) {
      return { status: 0, ok: false, data: {} }; // offline, refused, timed out
    } finally {
      clearTimeout(timer);
    }
  }

  const get = (path) => call(path, { headers: { Accept: "application/json" } });
  const messagesPath = (after) => `api/chat/${encodeURIComponent(session)}/messages?after=${after}`;

  function remember(id) {
    if (typeof id === "string" && id !== session) {
      session = id;
      stored("localStorage", SESSION_KEY, id);
    }
  }

  function forget() {
    session = null;
    lastId = 0;
    stored("localStorage", SESSION_KEY, null);
  }

  function restore() {
    if (!restoring) {
      restoring = (async () => {
        const asked = session;
        if (!asked) return;
        const res = await get(messagesPath(0));
        if (asked !== session) return; // "新しい会話" meanwhile
        if (res.status === 404) return forget();
        if (!res.ok || !Array.isArray(res.data.messages)) {
          restoring = null; // try again on the next open or send
          return;
        }
        const earlier = rendered(res.data.messages);
        if (earlier.length) {
          // Buttons the member has already answered stay visible but can no longer be pressed.
          const mine = earlier.map((item) => item.classList.contains("member")).lastIndexOf(true);
          for (const item of earlier.slice(0, Math.max(mine, 0))) {
            for (const button of item.querySelectorAll("button")) button.disabled = true;
          }
          if (greeting) greeting.remove();
          log.prepend(...earlier); // before anything the member sent while this was loading
          log.scrollTop = log.scrollHeight;
        }
      })();
    }
    return restoring;
  }

  async function post(path, payload) {
    const gen = ++generation;
    busy = true;
    clearNotice();
    setTyping(true);
    await restore();
    if (gen !== generation) return null;
    const res = await call(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ session_id: session, ...payload }),
    });
    if (gen !== generation) return null; // the member started a new conversation meanwhile
    busy = false;
    setTyping(false);
    res.good = res.ok && Array.isArray(res.data.replies);
    return res;
  }

  function accept(data) {
    remember(data.session_id);
    lastId = Math.max(lastId, Number(data.last_message_id) || 0);
    const added = data.replies.map((reply) => render(reply, "assistant"));
    append(added, true);
    schedulePoll();
    return added;
  }

  function schedulePoll(delay = POLL_MS) {
    clearTimeout(pollTimer);
    if (open && session) pollTimer = setTimeout(poll, delay);
  }

  async function poll() {
    if (!open || !session) return;
    if (busy || document.hidden) return schedulePoll();
    await restore();
    const gen = generation;
    const asked = session;
    if (!asked) return;
    const res = await get(messagesPath(lastId));
    if (gen === generation && asked === session) {
      if (res.status === 404) return forget(); // expired: the next message starts a new conversation
      if (res.ok && Array.isArray(res.data.messages)) append(rendered(res.data.messages), true);
    }
    schedulePoll(res.status === 429 ? Math.max(POLL_MS, 1000 * (Number(res.retryAfter) || 30)) : POLL_MS);
  }

  // --- rendering --------------------------------------------------------------------------------

  function rendered(messages) {
    const nodes = [];
    for (const message of messages) {
      if (!(message.id > lastId) || !message.reply) continue;
      lastId = message.id;
      if (message.from === "member") lastTyped = message.reply.text || lastTyped;
      nodes.push(render(message.reply, message.from));
    }
    return nodes;
  }

  function render(reply, from) {
    const who = from === "member" ? "member" : from === "staff" ? "staff" : "bot";
    const box = el("div", { class: "msg " + who },
      who !== "staff" && el("span", { class: "sr-only", text: who === "member" ? T.me : T.bot }));
    box.spoken = (who === "staff" ? T.staff + ": " : "") + (reply.question ? reply.question + "\n" : "") + (reply.text || "");
    if (who === "staff") box.append(el("p", { class: "from", text: T.staff }));
    if (reply.kind === "answer") {
      box.append(el("p", { class: "q", text: reply.question }), ...richText(reply.text, reply.links));
      if (reply.faq_id) {
        box.append(el("div", { class: "feedback" }, el("span", { text: T.helpful }), choices([
          { label: "👍", aria: T.up, action: `feedback:${reply.faq_id}:up` },
          { label: "👎", aria: T.down, action: `feedback:${reply.faq_id}:down` },
        ], "", T.helpful)));
      }
    } else {
      box.append(el("p", { class: "text", text: reply.text || "" }));
      if (reply.kind === "suggestions" && Array.isArray(reply.items)) {
        box.append(choices(reply.items.map((item) => ({ label: item.question, action: "faq:" + item.faq_id })), "list"));
      } else if (reply.kind === "buttons" && Array.isArray(reply.buttons)) {
        box.append(choices(reply.buttons, ""));
      }
    }
    return box;
  }

  function richText(text, links) {
    const body = el("p", { class: "text" });
    const rest = [];
    let remaining = String(text || "");
    for (const link of Array.isArray(links) ? links : []) {
      const href = safeUrl(link.url);
      const at = href && link.text ? remaining.indexOf(link.text) : -1;
      if (!href) continue;
      if (at < 0) {
        rest.push(el("li", {}, anchor(link.label || link.text || href, href, "")));
        continue;
      }
      body.append(remaining.slice(0, at), anchor(link.text, href, link.label));
      remaining = remaining.slice(at + link.text.length);
    }
    body.append(remaining);
    return rest.length ? [body, el("ul", { class: "links" }, ...rest)] : [body];
  }

  function anchor(text, href, label) {
    const hint = label && label !== text ? `(${label}・${T.newTab})` : `(${T.newTab})`;
    return el("a", { href, target: "_blank", rel: "noopener noreferrer" }, text, el("span", { class: "sr-only", text: hint }));
  }

  function choices(list, kind, label) {
    const group = el("div", { class: "choices " + kind, role: "group", "aria-label": label || null });
    for (const item of list) {
      const button = el("button", { type: "button", class: "choice", "aria-label": item.aria || null, text: item.label });
      button.addEventListener("click", (event) => choose(group, button, String(item.action), event.detail === 0));
      group.append(button);
    }
    return group;
  }

  function append(nodes, announce) {
    if (!nodes.length) return;
    const first = nodes[0];
    log.append(...nodes);
    if (!typing.hidden) log.append(typing);
    log.scrollTop = Math.max(0, first.offsetTop - 8);
    if (announce) {
      const spoken = nodes.filter((node) => !node.classList.contains("member")).map((node) => node.spoken).join("\n");
      if (spoken) say(spoken);
    }
  }

  function say(text) {
    live.textContent = "";
    setTimeout(() => { live.textContent = text; }, 60);
  }

  function addMember(text) {
    const node = render({ kind: "text", text }, "member");
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  function welcome() {
    greeting = render({ kind: "text", text: T.welcome }, "assistant");
    log.append(greeting);
  }

  function setTyping(on) {
    typing.hidden = !on;
    if (on) {
      log.append(typing);
      log.scrollTop = log.scrollHeight;
    }
  }

  function clearNotice() {
    if (notice) notice.remove();
    notice = null;
    formProblem.replaceChildren();
  }

  function problem(res, retry, where) {
    // The server's Japanese message when there is one. Offline, timed out or 5xx (503 unavailable):
    // a retry button. 422 (e.g. text_too_long), 429 (rate_limited: wait) and other 4xx: the text stays.
    const given = typeof res.data.message === "string" && res.data.message;
    const text = res.status === 0 ? T.offline
      : given || (res.status === 429 ? T.wait(Number(res.retryAfter) || 30) : T.busy);
    const canRetry = res.status === 0 || res.status >= 500;
    notice = el("div", { class: "notice", role: "alert" }, el("strong", { text: T.failed }), el("p", { text }),
      canRetry && el("button", {
        type: "button", class: "choice", text: T.retry,
        onclick: () => { (where ? submitButton : input).focus(); retry(); },
      }));
    if (where) where.replaceChildren(notice);
    else {
      log.append(notice);
      log.scrollTop = log.scrollHeight;
    }
  }

  // --- what the member does ---------------------------------------------------------------------

  async function sendText(text) {
    if (busy || !text.trim()) return;
    lastTyped = text;
    const mine = addMember(text);
    if (input.value === text) setInput("");
    const res = await post("api/chat", { text });
    if (!res) return;
    if (res.good) return void accept(res.data);
    mine.remove();
    if (!input.value.trim()) setInput(text); // keep what the member typed
    problem(res, () => sendText(text));
  }

  async function choose(group, button, action, byKeyboard) {
    if (action === FORM_ACTION) return openInquiry(lastTyped);
    if (busy) return;
    const buttons = [...group.querySelectorAll("button")];
    for (const other of buttons) other.disabled = true;
    button.classList.add("chosen");
    if (byKeyboard) input.focus();
    const res = await post("api/chat", { action });
    if (!res) return;
    if (res.good) {
      const added = accept(res.data);
      const next = byKeyboard && added.map((node) => node.querySelector("button.choice:not(:disabled)")).find(Boolean);
      if (next) next.focus();
      return;
    }
    for (const other of buttons) other.disabled = false;
    button.classList.remove("chosen");
    problem(res, () => choose(group, button, action, byKeyboard));
  }

  function setInput(value) {
    input.value = value;
    resize();
  }

  function resize() {
    input.style.height = "";
    if (!input.scrollHeight) return; // hidden: measured again on the next input
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 4, 140) + "px";
  }

  function newConversation() {
    forget();
    generation++; // drop whatever is still on its way
    busy = false;
    setTyping(false);
    clearNotice();
    closeMenu(false);
    closeInquiry(false);
    log.replaceChildren();
    welcome();
    setInput("");
    lastTyped = "";
    input.focus();
    say(T.newChatDone);
  }

  function openInquiry(question) {
    closeMenu(false);
    panel.classList.add("form-open");
    inquiry.hidden = false;
    if (question && !fQuestion.control.value) fQuestion.control.value = question;
    fName.control.focus();
  }

  function closeInquiry(focus) {
    panel.classList.remove("form-open");
    inquiry.hidden = true;
    formProblem.replaceChildren();
    if (focus) input.focus();
  }

  function validate() {
    const name = fName.control.value.trim();
    const email = fEmail.control.value.trim();
    const question = fQuestion.control.value.trim();
    const checks = [
      [fName, !name && T.noName],
      [fEmail, !email ? T.noEmail : !EMAIL.test(email) && T.badEmail],
      [fQuestion, !question ? T.noQuestion : question.length < 2 ? T.shortQuestion : question.length > 2000 && T.longQuestion],
    ];
    let first = null;
    for (const [item, message] of checks) {
      item.error.textContent = message || "";
      if (message) item.control.setAttribute("aria-invalid", "true");
      else item.control.removeAttribute("aria-invalid");
      first = first || (message && item.control);
    }
    if (first) first.focus();
    return !first;
  }

  async function submitInquiry() {
    if (busy || !validate()) return;
    const payload = {
      name: fName.control.value.trim(), email: fEmail.control.value.trim(), question: fQuestion.control.value.trim(),
    };
    // Not disabled (that would drop the keyboard focus): `busy` refuses a second submit meanwhile.
    submitButton.setAttribute("aria-disabled", "true");
    submitButton.textContent = T.sending;
    const res = await post("api/inquiry", payload);
    submitButton.removeAttribute("aria-disabled");
    submitButton.textContent = T.submit;
    if (!res) return;
    if (!res.good) return problem(res, submitInquiry, formProblem);
    closeInquiry(true);
    fQuestion.control.value = "";
    addMember(payload.question);
    accept(res.data);
  }

  function setOpen(value, focus) {
    open = value;
    panel.hidden = !value;
    launcher.setAttribute("aria-expanded", String(value));
    stored("sessionStorage", OPEN_KEY, value ? "1" : null);
    if (value) {
      restore().then(() => schedulePoll(300));
      resize();
      if (focus) (inquiry.hidden ? input : fName.control).focus();
    } else {
      clearTimeout(pollTimer);
      closeMenu(false);
      if (focus) launcher.focus();
    }
  }

  function closeMenu(focus) {
    menu.hidden = true;
    menuButton.setAttribute("aria-expanded", "false");
    if (focus) menuButton.focus();
  }

  // On a phone the panel covers the page: Tab cycles inside it instead of into the hidden page.
  const FULL = window.matchMedia ? window.matchMedia("(max-width: 480px), (max-height: 560px)") : null;
  function trapFocus(event) {
    const items = [...panel.querySelectorAll("button, textarea, input, a[href], [tabindex='0']")]
      .filter((item) => !item.disabled && item.getClientRects().length);
    const first = items[0];
    const last = items[items.length - 1];
    const active = root.activeElement;
    if (event.shiftKey ? active === first : active === last) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    }
  }

  // --- events -----------------------------------------------------------------------------------

  launcher.addEventListener("click", () => setOpen(!open, true));
  closeButton.addEventListener("click", () => setOpen(false, true));
  menuButton.addEventListener("click", () => {
    if (!menu.hidden) return closeMenu(true);
    menu.hidden = false;
    menuButton.setAttribute("aria-expanded", "true");
    menu.querySelector("button").focus();
  });
  root.addEventListener("click", (event) => {
    const path = event.composedPath();
    if (!menu.hidden && !path.includes(menu) && !path.includes(menuButton)) closeMenu(false);
  });
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Tab" && FULL && FULL.matches) return trapFocus(event);
    if (event.key !== "Escape" || event.isComposing) return;
    event.preventDefault();
    if (!menu.hidden) closeMenu(true);
    else setOpen(false, true);
  });
  let composing = false;
  input.addEventListener("compositionstart", () => { composing = true; });
  input.addEventListener("compositionend", () => { setTimeout(() => { composing = false; }, 0); });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229 || composing) return;
    event.preventDefault();
    sendText(input.value);
  });
  input.addEventListener("input", resize);
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendText(input.value);
    input.focus();
  });
  inquiry.addEventListener("submit", (event) => {
    event.preventDefault();
    submitInquiry();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && open) schedulePoll(0);
  });

  welcome();
  const attach = () => {
    document.body.append(host);
    if (stored("sessionStorage", OPEN_KEY) === "1") setOpen(true, false);
  };
  if (document.body) attach();
  else document.addEventListener("DOMContentLoaded", attach);
})();
