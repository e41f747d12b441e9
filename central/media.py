"""The media library: content-addressed files (sha256) in a directory, indexed in SQLite.

What may enter is decided by the bytes, never by the file name: the type is sniffed from the
magic bytes, each kind has a size cap, and an SVG with anything active in it (scripts, event
handlers, references to other documents) is refused, because the bus screens load it as an
image on the same origin as the pages. HTML is allowed (animated ads are HTML) but is served
with a CSP sandbox (see `central/http/media.py`), which gives it no origin and no network.

Files live at `<dir>/<first two hex digits>/<sha256>`; importing the same bytes twice stores
them once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import time
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from central.operator_files import NotAFile, check_regular, read_capped, write_durably
from central.store import ads as ads_db
from central.store.db import CentralStore

MB = 1_000_000
# Per kind: big enough for a 1080p ad, small enough for a cellular uplink and the bus's disk.
# Audio: recorded stop announcements (onboard/audio/sources.py), a few seconds of PCM each.
SIZE_CAPS = {"image": 20 * MB, "video": 300 * MB, "html": 2 * MB, "audio": 20 * MB}
SNIFF_BYTES = 4096
SVG_MAX_DEPTH = 64


class MediaRejected(Exception):
    """A file the library refuses; `reason` is a short machine-readable word."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaType:
    mime: str
    kind: str  # image | video | html | audio
    ext: str


PNG = MediaType("image/png", "image", "png")
JPEG = MediaType("image/jpeg", "image", "jpg")
GIF = MediaType("image/gif", "image", "gif")
WEBP = MediaType("image/webp", "image", "webp")
SVG = MediaType("image/svg+xml", "image", "svg")
MP4 = MediaType("video/mp4", "video", "mp4")
WEBM = MediaType("video/webm", "video", "webm")
HTML = MediaType("text/html", "html", "html")
WAV = MediaType("audio/wav", "audio", "wav")
TYPES = {t.mime: t for t in (PNG, JPEG, GIF, WEBP, SVG, MP4, WEBM, HTML, WAV)}


def sniff(head: bytes) -> MediaType:
    """The type of a file from its first bytes; MediaRejected if it is none we accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[4:8] == b"ftyp":
        return MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()  # BOM and leading blanks
    if text.startswith((b"<!doctype html", b"<html")):
        return HTML
    if text.startswith((b"<?xml", b"<svg", b"<!--")) and b"<svg" in text:
        return SVG
    raise MediaRejected("not an image, video, HTML page or WAV sound we accept", reason="type")


_ACTIVE_ELEMENTS = {"script", "foreignobject", "iframe", "embed", "object", "handler", "listener"}
_URL_IN_CSS = re.compile(r"url\(\s*['\"]?\s*([^'\")\s]*)", re.IGNORECASE)


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def check_svg(data: bytes) -> None:
    """Refuse an SVG that could run code or load anything: MediaRejected(reason="svg")."""
    lowered = data.lower()
    # No entities and no internal DTD subset: they are how XML bombs and external entity reads
    # start. A plain `<!DOCTYPE svg PUBLIC ...>` (as editors write it) is harmless: expat
    # never fetches the external DTD.
    doctype = lowered.find(b"<!doctype")
    if b"<!entity" in lowered or (doctype >= 0 and b"[" in lowered[doctype : doctype + 512]):
        raise MediaRejected("SVG with entities or an internal DTD", reason="svg")
    # Parsed with the namespace declarations in scope at each element: an animation names the
    # attribute it changes as a QName ("foo:href"), and only the namespace its prefix is bound
    # to says whether that is XLink's href, whatever the prefix is spelled.
    scopes: dict[int, dict[str, str]] = {}
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start-ns", "start", "end"))
    open_scopes: list[dict[str, str]] = [{"xml": XML_NS}]
    declared: dict[str, str] = {}
    root: ET.Element | None = None
    try:
        parser.feed(data)
        parser.close()
        for entry in parser.read_events():
            event, item = entry[0], entry[-1]
            if event == "start-ns" and isinstance(item, tuple):
                declared[str(item[0])] = str(item[-1])  # (prefix, uri)
            elif event == "start" and isinstance(item, ET.Element):
                root = item if root is None else root
                open_scopes.append({**open_scopes[-1], **declared})
                declared = {}
                scopes[id(item)] = open_scopes[-1]
            else:
                open_scopes.pop()
    except ET.ParseError as exc:
        raise MediaRejected(f"SVG is not well-formed XML: {exc}", reason="svg") from exc
    if root is None or _local(root.tag) != "svg":
        raise MediaRejected("the root element is not <svg>", reason="svg")
    stack: list[tuple[ET.Element, int]] = [(root, 0)]
    while stack:
        element, depth = stack.pop()
        if depth > SVG_MAX_DEPTH:
            raise MediaRejected("SVG nested too deeply", reason="svg")
        tag = _local(str(element.tag))
        if tag in _ACTIVE_ELEMENTS:
            raise MediaRejected(f"SVG with a <{tag}> element", reason="svg")
        for name, value in element.attrib.items():
            _check_svg_attribute(tag, _local(name), value, scopes.get(id(element), {}))
        if tag == "style" and element.text and _css_refers_out(element.text):
            raise MediaRejected("SVG style loads something", reason="svg")
        stack.extend((child, depth + 1) for child in element)


XML_NS = "http://www.w3.org/XML/1998/namespace"
XLINK_NS = "http://www.w3.org/1999/xlink"
_ANIMATIONS = {"animate", "set", "animatetransform", "animatemotion", "animatecolor"}
# Browsers drop ASCII tab and newline inside URLs and trim spaces and controls around them.
_URL_NOISE = re.compile(r"[\x00-\x20]")


def _check_svg_attribute(
    tag: str, name: str, value: str, namespaces: dict[str, str] | None = None
) -> None:
    text = value.strip().lower()
    if name.startswith("on"):
        raise MediaRejected(f"SVG with an event handler ({name})", reason="svg")
    if name in ("href", "src") and not (text.startswith("#") or _inline_image(text)):
        raise MediaRejected(f"SVG refers to another document ({text[:60]})", reason="svg")
    if tag in _ANIMATIONS and name == "attributename":
        prefix, _, local = text.rpartition(":")
        uri = (namespaces or {}).get(prefix) if prefix else ""
        if uri is None:
            raise MediaRejected(f"SVG animates {text!r}, an unbound prefix", reason="svg")
        if local.startswith("on") or (local == "href" and uri in ("", XLINK_NS)):
            raise MediaRejected("SVG animates a link or handler", reason="svg")
    if "javascript:" in _URL_NOISE.sub("", text) or _css_refers_out(value):
        raise MediaRejected("SVG attribute refers out or runs code", reason="svg")


def _inline_image(url: str) -> bool:
    return url.startswith(("data:image/png", "data:image/jpeg", "data:image/gif"))


def _css_refers_out(css: str) -> bool:
    """Whether CSS text (a <style>, a style or presentation attribute) could load anything:
    @import, @font-face, a url() that is not a fragment or an inline image, or any of the
    functions that take an image or font by a bare string (image-set() and its -webkit- form,
    image(), cross-fade(), src()). CSS escapes are undone first (`\\75 rl(` is `url(`)."""
    text = _CSS_ESCAPE.sub(_unescape, _CSS_COMMENT.sub("", css)).lower()
    if "@import" in text or "@font-face" in text or _CSS_FETCHING.search(text):
        return True
    return any(not (url.startswith("#") or _inline_image(url)) for url in _URL_IN_CSS.findall(text))


_CSS_COMMENT = re.compile(r"/\*.*?(\*/|$)", re.DOTALL)
_CSS_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6}[ \t\n\r\f]?|.)", re.DOTALL)
_CSS_FETCHING = re.compile(r"(?<![\w-])(?:-webkit-)?(?:image-set|image|cross-fade|src)\(")


def _unescape(match: re.Match[str]) -> str:
    body = match.group(1)
    hexdigits = body.rstrip(" \t\n\r\f")
    if hexdigits and all(c in "0123456789abcdefABCDEF" for c in hexdigits):
        code = int(hexdigits, 16)
        return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"
    return body


def validate(data: bytes, caps: dict[str, int] | None = None) -> MediaType:
    """Sniff and check a whole file; MediaRejected says why it may not enter."""
    if not data:
        raise MediaRejected("empty file", reason="empty")
    media = sniff(data[:SNIFF_BYTES])
    cap = (caps or SIZE_CAPS)[media.kind]
    if len(data) > cap:
        raise MediaRejected(
            f"{media.kind} of {len(data)} bytes exceeds the cap of {cap}", reason="size"
        )
    if media is SVG:
        check_svg(data)
    if media is WAV:
        check_wav(data)
    return media


def check_wav(data: bytes) -> None:
    """Refuse a WAV that is not plain PCM a bus can play (aplay, paplay) and mix: a header
    that lies (more frames than bytes), compressed or odd formats. MediaRejected(reason="wav")."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, rate, frames = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            sound = w.readframes(frames)
    except (wave.Error, EOFError, ValueError) as exc:
        raise MediaRejected(f"not a PCM WAV file: {exc}", reason="wav") from None
    if channels not in (1, 2) or width not in (1, 2) or not 8_000 <= rate <= 48_000:
        raise MediaRejected(
            f"WAV of {channels} channels, {8 * width} bits, {rate} Hz: give mono or stereo"
            " 8 or 16 bit PCM at 8-48 kHz",
            reason="wav",
        )
    if frames == 0 or len(sound) != frames * channels * width:
        raise MediaRejected("WAV without sound, or shorter than its header says", reason="wav")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    sha256: str
    name: str
    mime: str
    kind: str
    size: int
    imported: float

    @property
    def ext(self) -> str:
        return TYPES[self.mime].ext


def media_path(root: Path, sha256: str) -> Path:
    """Where the library keeps the file with this hash."""
    return root / sha256[:2] / sha256


class MediaLibrary:
    """Import, look up and list media; the store's `media` table is the index."""

    def __init__(
        self, store: CentralStore, root: str | Path, caps: dict[str, int] | None = None
    ) -> None:
        self.store = store
        self.root = Path(root)
        self.caps = dict(caps or SIZE_CAPS)

    def import_file(self, path: str | Path, name: str | None = None) -> MediaInfo:
        """Validate and add a file; an oversized file is refused before it is read whole."""
        path = check_regular(path)  # NotAFile for a FIFO, a device, a folder: never blocks
        cap = max(self.caps.values())
        size = path.stat().st_size
        if size > cap:
            raise MediaRejected(f"{size} bytes exceeds every size cap", reason="size")
        try:  # counted while reading: a file that grows, or lies about its size, stops here
            data = read_capped(path, cap)
        except NotAFile as exc:
            raise MediaRejected(str(exc), reason="size") from exc
        return self.import_bytes(data, name or path.name)

    def import_bytes(self, data: bytes, name: str) -> MediaInfo:
        media = validate(data, self.caps)
        sha = hashlib.sha256(data).hexdigest()
        known = self.get(sha)
        if known is not None and media_path(self.root, sha).exists():
            return known
        write_durably(media_path(self.root, sha), data)
        info = MediaInfo(sha, name[:200], media.mime, media.kind, len(data), time.time())
        ads_db.add_media(self.store, dataclasses.asdict(info))
        return self.get(sha) or info

    def get(self, sha256: str) -> MediaInfo | None:
        row = ads_db.media_row(self.store, sha256)
        return None if row is None else MediaInfo(**row)

    def list(self) -> list[MediaInfo]:
        return [MediaInfo(**r) for r in ads_db.media_rows(self.store)]

    def find(self, ref: str) -> MediaInfo | None:
        """A media file by its full hash, a unique hash prefix (>= 8) or its name."""
        if len(ref) == 64:
            return self.get(ref)
        found: list[str] = []
        if len(ref) >= 8:
            found = ads_db.media_prefixed(self.store, ref.lower())
        if not found:
            found = ads_db.media_named(self.store, ref)
        return self.get(found[0]) if len(found) == 1 else None
