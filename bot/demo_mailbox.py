"""The demo mailbox: on the demo database without SMTP, the mails a member would receive, on stderr.

The offline demo must show the one-time codes and reset links it "sends", or nobody could try the
flows that need them. They are printed to the terminal of the person running the demo, and never
written through ``logging``: a log is kept, shipped and read by others, and must never hold a
code, a token or an address (``Mailer`` only calls this on the database ``db seed-demo`` marked).
"""

from __future__ import annotations

import sys
from typing import TextIO

RULE = "-" * 60


def show(mail_id: int, recipient: str, subject: str, text: str, stream: TextIO | None = None) -> None:
    """Print one mail, headers and body, framed so it stands out among the server's output."""
    out = stream if stream is not None else sys.stderr  # looked up now: tests and the CLI swap sys.stderr
    print(
        f"{RULE}\n[demo mailbox] mail {mail_id} (not sent: the demo database has no SMTP server)\n"
        f"To: {recipient}\nSubject: {subject}\n\n{text.rstrip()}\n{RULE}",
        file=out,
        flush=True,
    )
