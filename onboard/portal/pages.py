"""The portal's pages, German and English: small, mobile-first, no external resources.

Every page is one HTML document with its CSS inline and no script, so it renders in a phone's
captive-portal sheet (which runs little or no JavaScript) and with the uplink down. Every
value that is not a literal of this module goes through `e()` (html.escape).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

from onboard.portal.content import Announcement, PortalContent
from onboard.portal.feedback import CATEGORIES, MAX_TEXT

LANGS = ("de", "en")

T: dict[str, dict[str, str]] = {
    "de": {
        "title": "Kostenloses WLAN im Bus",
        "other": "English",
        "welcome": "Willkommen an Bord! Das WLAN ist kostenlos, ohne Anmeldung und ohne Passwort.",
        "terms_h": "Nutzungsbedingungen",
        "terms": (
            "<li>Das WLAN wird von {operator} kostenlos und ohne Gewähr bereitgestellt. "
            "Verbindung und Geschwindigkeit können unterwegs schwanken.</li>"
            "<li>Nutzen Sie es nicht für rechtswidrige Zwecke.</li>"
            "<li>Eine Sitzung endet nach {hours} Stunden oder {idle} Minuten ohne Nutzung; "
            "danach können Sie wieder zustimmen.</li>"
            "<li>Datenschutz: Wir speichern Ihre MAC-Adresse nicht. Nur solange Ihre Sitzung "
            "läuft, hält der Bus einen Hash aus MAC- und IP-Adresse. Wir zählen Nutzer und "
            "Datenmengen nur in Summe. Keine Werbe-Einwilligung nötig.</li>"
        ),
        "operator": "dem Betreiber dieses Busses",
        "accept": "Ich stimme den Nutzungsbedingungen zu",
        "go": "Zustimmen und online gehen",
        "must_accept": "Bitte bestätigen Sie die Nutzungsbedingungen.",
        "full": "Der Bus ist gerade voll: Alle WLAN-Plätze sind belegt. Bitte später erneut.",
        "unknown": "Ihr Gerät ist im Bus-Netz nicht zu erkennen. Bitte WLAN neu verbinden.",
        "error": "Das hat nicht geklappt. Bitte versuchen Sie es gleich noch einmal.",
        "online": "Sie sind online.",
        "not_online": "Noch nicht verbunden.",
        "left": "Noch {minutes} Minuten",
        "mb_left": "noch {mb} MB",
        "connect": "Zum WLAN-Zugang",
        "line": "Linie",
        "next": "Nächste Haltestellen",
        "news": "Mitteilungen",
        "ad": "Anzeige",
        "feedback": "Feedback an die Stadt",
        "logout": "WLAN-Sitzung beenden",
        "info": "Fahrtinfo",
        "fb_intro": "Was fällt Ihnen auf? Ihre Nachricht geht anonym an die Stadt.",
        "category": "Thema (optional)",
        "message": "Ihre Nachricht",
        "send": "Senden",
        "thanks": "Danke! Ihre Nachricht ist unterwegs.",
        "fb_empty": "Bitte schreiben Sie eine Nachricht.",
        "fb_too_long": f"Die Nachricht ist zu lang (höchstens {MAX_TEXT} Zeichen).",
        "fb_category": "Bitte wählen Sie ein Thema aus der Liste.",
        "fb_rate": "Sie haben schon mehrere Nachrichten geschickt. Bitte später wieder.",
        "fb_expired": "Das Formular ist abgelaufen. Bitte noch einmal senden.",
        "form_expired": "Die Seite ist abgelaufen. Bitte noch einmal versuchen.",
        "c_": "—",
        "c_cleanliness": "Sauberkeit",
        "c_punctuality": "Pünktlichkeit",
        "c_driving": "Fahrweise",
        "c_wifi": "WLAN",
        "c_accessibility": "Barrierefreiheit",
        "c_other": "Sonstiges",
        "back": "Zurück",
    },
    "en": {
        "title": "Free Wi-Fi on the bus",
        "other": "Deutsch",
        "welcome": "Welcome aboard! The Wi-Fi is free, with no registration and no password.",
        "terms_h": "Terms of use",
        "terms": (
            "<li>The Wi-Fi is provided free of charge by {operator}, without warranty. "
            "Connection and speed vary along the route.</li>"
            "<li>Do not use it for anything unlawful.</li>"
            "<li>A session ends after {hours} hours or {idle} minutes without use; you can "
            "accept again afterwards.</li>"
            "<li>Privacy: we do not store your MAC address. Only while your session lasts, "
            "the bus keeps a hash of MAC and IP address. We count users and data volume in "
            "total only. No marketing consent needed.</li>"
        ),
        "operator": "the operator of this bus",
        "accept": "I accept the terms of use",
        "go": "Accept and go online",
        "must_accept": "Please tick the box to accept the terms.",
        "full": "The bus is full right now: every Wi-Fi place is taken. Please try later.",
        "unknown": "Your device cannot be recognised on the bus network. Please reconnect.",
        "error": "That did not work. Please try again in a moment.",
        "online": "You are online.",
        "not_online": "Not connected yet.",
        "left": "{minutes} minutes left",
        "mb_left": "{mb} MB left",
        "connect": "Get online",
        "line": "Line",
        "next": "Next stops",
        "news": "Announcements",
        "ad": "Advertisement",
        "feedback": "Feedback to the city",
        "logout": "End Wi-Fi session",
        "info": "Trip info",
        "fb_intro": "Anything to tell us? Your message goes to the city anonymously.",
        "category": "Topic (optional)",
        "message": "Your message",
        "send": "Send",
        "thanks": "Thank you! Your message is on its way.",
        "fb_empty": "Please write a message.",
        "fb_too_long": f"The message is too long (at most {MAX_TEXT} characters).",
        "fb_category": "Please choose a topic from the list.",
        "fb_rate": "You have sent several messages already. Please try again later.",
        "fb_expired": "The form has expired. Please send it again.",
        "form_expired": "This page has expired. Please try again.",
        "c_": "—",
        "c_cleanliness": "Cleanliness",
        "c_punctuality": "Punctuality",
        "c_driving": "Driving",
        "c_wifi": "Wi-Fi",
        "c_accessibility": "Accessibility",
        "c_other": "Other",
        "back": "Back",
    },
}

CSS = """
*{box-sizing:border-box}body{margin:0;font:18px/1.45 system-ui,sans-serif;background:#fff;
color:#111}header{background:#003b6f;color:#fff;padding:14px 16px;display:flex;
justify-content:space-between;align-items:center}header h1{font-size:1.15em;margin:0}
header a{color:#fff}main{padding:12px 16px 32px;max-width:40em;margin:auto}
.box{border:2px solid #003b6f;border-radius:10px;padding:10px 14px;margin:12px 0}
.line{font-weight:700;background:#ffd400;color:#000;padding:2px 8px;border-radius:6px}
.ok{color:#0a6b2d;font-weight:700}.err{color:#b00020;font-weight:700}
button,.btn{display:block;width:100%;font:inherit;font-weight:700;padding:14px;margin:14px 0;
border:0;border-radius:10px;background:#003b6f;color:#fff;text-align:center;
text-decoration:none}.quiet{background:#e8eef5;color:#003b6f}
label{display:block;margin:10px 0}input[type=checkbox]{width:1.4em;height:1.4em;
vertical-align:middle;margin-right:8px}select,textarea{width:100%;font:inherit;padding:8px}
ul{padding-left:1.2em}li{margin:4px 0}.ad{background:#f4f4f4}small{color:#444}
.ad h2{font-size:1.1em;margin:4px 0}:focus-visible{outline:3px solid #111;outline-offset:2px}
header :focus-visible{outline-color:#fff}
"""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    authorised: bool
    seconds_left: float = 0.0
    bytes_left: int | None = None


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def pick_lang(query: str | None, accept_language: str) -> str:
    """?lang= wins; else the first of de/en in Accept-Language by weight; else German."""
    if query in LANGS:
        return query
    best, best_q = "de", -1.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower()[:2]
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


def layout(lang: str, body: str, path: str) -> str:
    t = T[lang]
    other = "en" if lang == "de" else "de"
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(t['title'])}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{e(t['title'])}</h1>"
        f'<a href="{e(path)}?lang={other}" hreflang="{other}" lang="{other}">{e(t["other"])}</a>'
        "</header>"
        f"<main>{body}</main></body></html>"
    )


def bus_box(lang: str, content: PortalContent) -> str:
    t = T[lang]
    parts = []
    if content.line or content.destination:
        parts.append(
            f'<p><span class="line">{e(t["line"])} {e(content.line)}</span> '
            f'<span aria-hidden="true">&rarr;</span> <strong>{e(content.destination)}</strong></p>'
        )
    if content.next_stops:
        stops = "".join(
            f"<li>{e(s.name)}"
            + (
                f" <small>{time.strftime('%H:%M', time.localtime(s.expected))}</small>"
                if s.expected
                else ""
            )
            + "</li>"
            for s in content.next_stops
        )
        parts.append(f"<h2>{e(t['next'])}</h2><ol>{stops}</ol>")
    if content.announcements:
        news = "".join(
            f"<li{_lang_of(a, lang)}>{e(a.text(lang))}</li>" for a in content.announcements
        )
        parts.append(f"<h2>{e(t['news'])}</h2><ul>{news}</ul>")
    box = f'<section class="box" id="trip">{"".join(parts)}</section>' if parts else ""
    if content.ad is not None:
        ad = content.ad
        image = f'<img src="{e(ad.image)}" alt="" style="max-width:100%">' if ad.image else ""
        box += (
            f'<aside class="box ad" id="ad"><small>{e(t["ad"])}</small>'
            f"<h2>{e(ad.title)}</h2>{image}<p>{e(ad.text)}</p></aside>"
        )
    return box


def _lang_of(announcement: Announcement, lang: str) -> str:
    """A lang attribute where a text is not in the page's language: an English page shows
    the German text of a message that has no English one (a screen reader switches voice)."""
    return "" if announcement.text(lang) == announcement.text_en or lang == "de" else ' lang="de"'


def terms_page(
    lang: str,
    content: PortalContent,
    *,
    session_s: float,
    idle_s: float,
    operator: str = "",
    error: str = "",
    csrf: str = "",
) -> str:
    t = T[lang]
    terms = t["terms"].format(
        operator=e(operator or t["operator"]),
        hours=f"{session_s / 3600:.3g}",
        idle=f"{idle_s / 60:.3g}",
    )
    message = f'<p class="err" role="alert">{e(t[error])}</p>' if error else ""
    body = (
        f"<p>{e(t['welcome'])}</p>{message}"
        f'<form method="post" action="/accept"><input type="hidden" name="lang" value="{lang}">'
        f"{_csrf_field(csrf)}"
        f'<label><input type="checkbox" name="accept" value="yes" required>{e(t["accept"])}'
        f'</label><button type="submit" id="go">{e(t["go"])}</button></form>'
        f"<h2>{e(t['terms_h'])}</h2><ul>{terms}</ul>"
        f"{bus_box(lang, content)}"
        f'<a class="btn quiet" href="/feedback?lang={lang}">{e(t["feedback"])}</a>'
    )
    return layout(lang, body, "/")


def _csrf_field(token: str) -> str:
    """The form's proof that it was rendered by the portal for this client (server.py)."""
    return f'<input type="hidden" name="csrf" value="{e(token)}">' if token else ""


def status_page(lang: str, content: PortalContent, info: SessionInfo, csrf: str = "") -> str:
    t = T[lang]
    if info.authorised:
        left = t["left"].format(minutes=int(info.seconds_left // 60))
        if info.bytes_left is not None:
            left += ", " + t["mb_left"].format(mb=info.bytes_left // 1_000_000)
        state = f'<p class="ok" id="state">{e(t["online"])} <small>{e(left)}</small></p>'
        action = (
            f'<form method="post" action="/logout"><input type="hidden" name="lang" '
            f'value="{lang}">{_csrf_field(csrf)}'
            f'<button class="quiet" type="submit">{e(t["logout"])}</button></form>'
        )
    else:
        state = f'<p class="err" id="state">{e(t["not_online"])}</p>'
        action = f'<a class="btn" href="/?lang={lang}">{e(t["connect"])}</a>'
    body = (
        f"{state}{bus_box(lang, content)}"
        f'<a class="btn quiet" href="/feedback?lang={lang}">{e(t["feedback"])}</a>{action}'
    )
    return layout(lang, body, "/status")


def feedback_page(
    lang: str, token: str, *, error: str = "", category: str = "", text: str = ""
) -> str:
    t = T[lang]
    options = "".join(
        f'<option value="{c}"{" selected" if c == category else ""}>{e(t["c_" + c])}</option>'
        for c in ("", *CATEGORIES)
    )
    message = f'<p class="err" role="alert" id="error">{e(t["fb_" + error])}</p>' if error else ""
    invalid = ' aria-invalid="true" aria-describedby="error"' if error else ""
    body = (
        f"<p>{e(t['fb_intro'])}</p>{message}"
        f'<form method="post" action="/feedback"><input type="hidden" name="lang" value="{lang}">'
        f'<input type="hidden" name="token" value="{e(token)}">'
        f'<label>{e(t["category"])}<select name="category">{options}</select></label>'
        f'<label>{e(t["message"])}<textarea name="text" rows="5" maxlength="{MAX_TEXT}" '
        f"required{invalid}>{e(text)}</textarea></label>"
        f'<button type="submit">{e(t["send"])}</button>'
        f'</form><a class="btn quiet" href="/status?lang={lang}">{e(t["back"])}</a>'
    )
    return layout(lang, body, "/feedback")


def thanks_page(lang: str, text: str) -> str:
    t = T[lang]
    body = (
        f'<p class="ok" id="thanks">{e(t["thanks"])}</p><blockquote>{e(text)}</blockquote>'
        f'<a class="btn quiet" href="/status?lang={lang}">{e(t["back"])}</a>'
    )
    return layout(lang, body, "/feedback")
