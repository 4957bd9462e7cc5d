"""Render `templates/slack/*.json.j2` into Block Kit messages that Slack will accept.

    >>> from bot.chat.slack.messages import render
    >>> msg = render("help", {})
    >>> msg.text.startswith("/runbook")
    True
    >>> msg.overflow is None            # nothing was cut, so nothing needs attaching
    True

A template renders one JSON object: `{"text": ..., "blocks": [...]}` for a message or a modal view
(`{"type": "modal", ...}`). Values enter JSON through the `j` filter (json.dumps) and Slack
markup through `esc` (escapes &, <, >), so no data can break the JSON or inject a mention.

Then `fit()` enforces Slack's limits instead of letting the API refuse the post: 50 blocks, 3000
characters per section text, 2000 per field, 150 per header, 10 context elements, about 12k
characters across all blocks. Whatever is cut is kept whole in `Message.overflow` (the text of
every block as rendered) and the channel attaches it with `files_upload_v2` ("full output
attached"), so truncation loses nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2

from bot import config, secrets

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_HEADER = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_VALUE = 2000
MAX_TOTAL = 11_000  # Slack's undocumented aggregate limit (msg_blocks_too_long) is near 13k
MAX_TEXT = 3_000  # the notification fallback; Slack cuts at 40k but nobody reads that much
ATTACHED = "… _(truncated: full output attached)_"

STATE_EMOJI = {
    "pending": "⚪", "planned": "📝", "awaiting_approval": "⏳", "approved": "👍", "applying": "🔄",
    "verifying": "🔍", "succeeded": "✅", "failed": "❌", "skipped": "⏭️", "interrupted": "⚠️",
    "rejected": "🚫", "running": "🔄", "aborted": "🛑", "rolling_back": "↩️", "rolled_back": "↩️",
    "cancelled": "🛑", "ok": "🟢", "warn": "🟡", "breach": "🔴",
    "blocked": "⛔", "completed_with_failures": "❌", "rollback_incomplete": "🚨",
}


@dataclass
class Message:
    text: str
    blocks: list[dict[str, Any]]
    overflow: str | None = None  # the full text when something was cut; attach it as a file
    view: dict[str, Any] | None = None  # set instead of blocks/text for modal templates

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


# -- filters ---------------------------------------------------------------------------------------


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def esc(value: Any) -> str:
    """Escape Slack markup in data so `<!channel>` or `<@U1>` from a step cannot ping anyone."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def trunc(value: Any, limit: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def slack_date(epoch: Any, fmt: str = "{date_short_pretty} {time}") -> str:
    """`<!date^...>`: every reader sees the time in their own zone; the fallback is UTC."""
    if epoch is None:
        return ""
    seconds = int(float(epoch))
    fallback = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{seconds}^{fmt}|{fallback}>"


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = int(float(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def user(spec: Any) -> str:
    """A user id becomes a mention; anything else (a console user, an email) is shown escaped."""
    text = str(spec or "")
    if text[:1] in ("U", "W") and text[1:].isalnum() and text.upper() == text:
        return f"<@{text}>"
    return esc(text)


_USER_IDS = re.compile(r"\b([UW][A-Z0-9]{6,})\b")


def mention_ids(text: Any) -> str:
    """Escape, then show Slack user ids in engine sentences ("U0BOB approved") as mentions."""
    return _USER_IDS.sub(r"<@\1>", esc(text))


def approver(spec: Any) -> str:
    text = str(spec)
    if text == "*":
        return "anyone"
    if text.startswith("@"):
        return f"`{esc(text)}`"
    return user(text)


def table_chunks(rows: Any, limit: int = 2900, cell: int = 48) -> list[str]:
    """A header-first matrix as aligned monospace text, cut into code-block-sized chunks.

    Cells are cut to `cell` characters (full values are in the attached file); each chunk is at most
    `limit` characters including the ``` fences, so each fits one section.
    """
    if not rows:
        return []
    cells = [[trunc(str(c if c is not None else ""), cell).replace("`", "ˋ") for c in row] for row in rows]
    width = max(len(r) for r in cells)
    for row in cells:
        row.extend([""] * (width - len(row)))
    widths = [max(len(r[i]) for r in cells) for i in range(width)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    budget = limit - 8
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        line = trunc(line, budget)
        if current and size + len(line) + 1 > budget:
            chunks.append("```" + "\n".join(current) + "```")
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("```" + "\n".join(current) + "```")
    return chunks


_CLI_HINT = re.compile(r"`?runbook-bot (\w+)((?: [\w.:-]+)*)`?")
_SLASH = ("plan", "run", "status", "abort", "rollback", "replan", "watch", "list", "help")


def slack_hints(text: Any) -> str:
    """CLI hints in engine sentences become what does the same in Slack.

    >>> slack_hints("re-plan it (`runbook-bot replan r-1`)")
    're-plan it (`/runbook replan r-1`)'
    >>> slack_hints("(`runbook-bot resolve r-1 copy-db rollback` rolls back)")
    "(the *Rollback* button on step copy-db's message rolls back)"
    """
    def swap(match: re.Match[str]) -> str:
        sub, rest = match.group(1), match.group(2)
        if sub in _SLASH:
            return f"`/runbook {sub}{rest}`"
        if sub == "resolve":
            args = rest.split()
            step, choice = (args[1], args[2]) if len(args) >= 3 else ("the", "Verify/Retry/Skip/Rollback")
            return f"the *{choice.capitalize()}* button on step {step}'s message"
        if sub in ("approve", "reject"):
            return "the Approve / Reject buttons on the step's message"
        return match.group(0)

    return _CLI_HINT.sub(swap, str(text))


def join_prefixed(items: Any, prefix: str) -> str:
    """Each item on its own line after `prefix` (`"\n⚠️ "`): nothing at all for no items."""
    return "".join(prefix + str(item) for item in items or [])


def button_value(**fields: Any) -> str:
    value = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    if len(value) > MAX_BUTTON_VALUE:
        raise ValueError(f"button value of {len(value)} characters exceeds Slack's {MAX_BUTTON_VALUE}")
    return value


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(config.templates_dir() / "slack")),
        autoescape=False,
        # Strict, as the runbooks' templates are: a misspelt name fails the render (and a test)
        # instead of blanking a field on an approval card. Optional keys are written `x.get("k")`.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(j=_j, esc=esc, trunc=trunc, date=slack_date, duration=duration, user=user,
                       approver=approver, table_chunks=table_chunks,
                       mention_ids=mention_ids, join_prefixed=join_prefixed, slack_hints=slack_hints)
    env.globals.update(emoji=lambda state: STATE_EMOJI.get(str(state), "▫️"), button_value=button_value,
                       MAX_SECTION=MAX_SECTION)
    from bot.chat.slack import ids

    env.globals.update(Action=ids.Action, Block=ids.Block, View=ids.View)
    return env


def template_names() -> list[str]:
    return sorted(n[: -len(".json.j2")] for n in environment().list_templates() if n.endswith(".json.j2"))


def render(name: str, context: dict[str, Any]) -> Message:
    """Render `templates/slack/<name>.json.j2`, redact it, and fit it into Slack's limits."""
    raw = environment().get_template(f"{name}.json.j2").render(**context)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:  # a template bug: say which template and where
        raise ValueError(f"template slack/{name}.json.j2 rendered invalid JSON: {exc}") from exc
    data = secrets.redact_obj(data)
    if data.get("type") in ("modal", "home"):  # a view (views.open/update/publish), not a message
        return Message(text="", blocks=data.get("blocks", []), view=data)
    return fit(data.get("text") or "", data.get("blocks") or [])


# -- limits ----------------------------------------------------------------------------------------


def _block_text(block: dict[str, Any]) -> str:
    parts: list[str] = []
    text = block.get("text")
    if isinstance(text, dict):
        parts.append(text.get("text", ""))
    for field in block.get("fields") or []:
        parts.append(field.get("text", ""))
    for element in block.get("elements") or []:
        if isinstance(element, dict) and element.get("type") in ("mrkdwn", "plain_text"):
            parts.append(element.get("text", ""))
    return "\n".join(p.replace("```", "") for p in parts if p)


def full_text(blocks: list[dict[str, Any]]) -> str:
    return "\n\n".join(t for t in (_block_text(b) for b in blocks) if t)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - len(ATTACHED) - 4]
    if head.count("```") % 2 == 1:  # close a code block we cut open
        head += "```"
    return head + "\n" + ATTACHED


def _size(block: dict[str, Any]) -> int:
    return len(json.dumps(block, ensure_ascii=False))


def _within_limits(text: str, blocks: list[dict[str, Any]]) -> bool:
    """The common case, checked cheaply: nothing to cut."""
    if len(blocks) > MAX_BLOCKS or len(text) > MAX_TEXT or not text:
        return False
    total = 0
    for block in blocks:
        kind = block.get("type")
        t = block.get("text")
        if isinstance(t, dict) and len(t.get("text", "")) > (MAX_HEADER if kind == "header" else MAX_SECTION):
            return False
        fields = block.get("fields") or ()
        if len(fields) > 10 or any(len(f.get("text", "")) > MAX_FIELD for f in fields):
            return False
        elements = block.get("elements") or ()
        if kind == "context" and (len(elements) > MAX_CONTEXT_ELEMENTS or any(
                len(e.get("text", "")) > MAX_SECTION for e in elements if isinstance(e, dict))):
            return False
        total += _size(block)
    return total <= MAX_TOTAL


def fit(text: str, blocks: list[dict[str, Any]]) -> Message:
    """Cut blocks to Slack's limits; when anything is cut, `overflow` holds the full text."""
    if _within_limits(text, blocks):
        return Message(text=text, blocks=blocks)
    cut = False
    fitted: list[dict[str, Any]] = []
    for block in blocks:
        block = json.loads(json.dumps(block))
        kind = block.get("type")
        if kind == "header":
            t = block["text"]["text"]
            if len(t) > MAX_HEADER:
                block["text"]["text"] = trunc(t, MAX_HEADER)
        elif kind == "section":
            t = block.get("text")
            if isinstance(t, dict) and len(t.get("text", "")) > MAX_SECTION:
                t["text"] = _cut(t["text"], MAX_SECTION)
                cut = True
            fields = block.get("fields")
            if fields:
                if len(fields) > 10:
                    del fields[10:]
                    cut = True
                for f in fields:
                    if len(f.get("text", "")) > MAX_FIELD:
                        f["text"] = _cut(f["text"], MAX_FIELD)
                        cut = True
        elif kind == "context":
            elements = block.get("elements", [])
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                del elements[MAX_CONTEXT_ELEMENTS:]
                cut = True
            for e in elements:
                if e.get("type") in ("mrkdwn", "plain_text") and len(e.get("text", "")) > MAX_SECTION:
                    e["text"] = _cut(e["text"], MAX_SECTION)
                    cut = True
        fitted.append(block)

    # Keep actions blocks (the approval buttons) and the last block (the footer) whatever happens:
    # a cut message must still be approvable.
    def keep(i: int, b: dict[str, Any]) -> bool:
        return b.get("type") == "actions" or i == len(fitted) - 1

    total = sum(_size(b) for b in fitted)
    if len(fitted) > MAX_BLOCKS or total > MAX_TOTAL:
        cut = True
        kept: list[dict[str, Any]] = []
        must = [b for i, b in enumerate(fitted) if keep(i, b)]
        budget_blocks = MAX_BLOCKS - len(must) - 1
        budget_size = MAX_TOTAL - sum(_size(b) for b in must) - 200
        dropped = 0
        for i, b in enumerate(fitted):
            if keep(i, b):
                kept.append(b)
                continue
            size = _size(b)
            if budget_blocks > 0 and size <= budget_size:
                kept.append(b)
                budget_blocks -= 1
                budget_size -= size
            else:
                dropped += 1
        note = {"type": "context", "elements": [{"type": "mrkdwn",
                "text": f"_{dropped} more block(s) not shown: full output attached._"}]}
        last = kept.pop() if kept and keep(len(fitted) - 1, fitted[-1]) and kept[-1] is fitted[-1] else None
        kept.append(note)
        if last is not None:
            kept.append(last)
        fitted = kept
    text = text or full_text(fitted)[:MAX_TEXT] or " "
    if len(text) > MAX_TEXT:
        text = trunc(text, MAX_TEXT)
    return Message(text=text, blocks=fitted, overflow=full_text(blocks) if cut else None)
