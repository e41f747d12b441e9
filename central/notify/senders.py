"""The two ways a notification leaves central: an e-mail (SMTP with STARTTLS) and a signed
webhook (JSON POST). Each raises SendError with a reason fit for the deliveries log (never a
credential)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import aiohttp

from central.notify.rules import SIGNATURE_HEADER, Smtp, Webhook, sign

__all__ = ["Mailer", "SendError", "post_webhook"]


class SendError(Exception):
    """A delivery attempt failed (the message says why; tried again with backoff)."""


class Mailer:
    """smtplib on a thread of its own: a dead or silent SMTP server holds that thread only
    (each socket operation bounded by `timeout_s`), never the event loop or other threads."""

    def __init__(self, smtp: Smtp) -> None:
        self.smtp = smtp
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-smtp")

    async def send(self, to: str, subject: str, text: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.smtp.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(text)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        s = self.smtp
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as client:
                if s.starttls:
                    context = ssl.create_default_context(cafile=s.ca_file or None)
                    client.starttls(context=context)
                if s.username:
                    client.login(s.username, s.password)
                client.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise SendError(f"SMTP login refused for {s.username!r} ({exc.smtp_code})") from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise SendError(f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def post_webhook(
    session: aiohttp.ClientSession, hook: Webhook, body: bytes, delivery: str
) -> None:
    """POST `body` signed with the hook's secret; any answer but 2xx is a failure."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(hook.secret, body, int(time.time())),
        "X-Busfleet-Delivery": delivery,
    }
    try:
        timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
        async with session.post(hook.url, data=body, headers=headers, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise SendError(f"webhook {hook.name}: HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendError(f"webhook {hook.name}: {type(exc).__name__}: {exc}") from exc
