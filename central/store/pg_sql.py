"""The one place where central's SQLite-dialect statements become PostgreSQL's (backend.py).

`translate(sql, named)`: placeholders (`?`, or `:name` when the parameters are a mapping)
become psycopg's (`%s`, `%(name)s`) and a literal `%` is doubled, outside quoted text and
names; `INSERT OR IGNORE INTO ...` becomes `INSERT INTO ... ON CONFLICT DO NOTHING`. A
statement with a SQLite-only form this does not translate raises `NotPorted`, naming it: it
would fail on the server, or worse, run with another meaning (LIKE ignores case on SQLite).
"""

from __future__ import annotations

import functools
import re

from central.store.backend import NotPorted

__all__ = ["translate"]

# SQLite forms with no translation here: each statement using one needs its PostgreSQL text.
# json_field and json_number are PostgreSQL's (pg_schema.py, migration 9), never SQLite's.
_SQLITE_ONLY = re.compile(
    r"\b(?:PRAGMA|INSERT\s+OR\s+(?:REPLACE|ABORT|FAIL|ROLLBACK)|REPLACE\s+INTO|ROWID|_ROWID_|"
    r"OID|AUTOINCREMENT|GLOB|LIKE|SQLITE_\w+|ATTACH|VACUUM|LAST_INSERT_ROWID)\b"
    r"|\b(?:RAISE|JSON(?!_FIELD\s*\(|_NUMBER\s*\()\w*|STRFTIME|JULIANDAY|UNIXEPOCH|DATETIME|"
    r"DATE|TIME|GROUP_CONCAT|PRINTF|"
    r"IFNULL|IIF|INSTR|TOTAL|CHANGES)\s*\("
    r"|\bIS\s+(?:NOT\s+)?\?",
    re.IGNORECASE,
)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=512)
def translate(sql: str, named: bool = False) -> str:
    """`sql` (SQLite's dialect) as psycopg runs it on PostgreSQL; NotPorted if it cannot."""
    sql = _without_comments(sql)  # a "?", "'" or "%" in a comment is no SQL
    code = _outside_quotes(sql)
    found = _SQLITE_ONLY.search(code)
    if found:
        raise NotPorted(
            f"not ported to PostgreSQL yet: {found.group(0).strip()!r} in {' '.join(sql.split())}"
        )
    text = _placeholders(sql, named)
    if _INSERT_OR_IGNORE.match(text):
        if re.search(r"\b(?:ON\s+CONFLICT|RETURNING)\b", code, re.IGNORECASE):
            raise NotPorted(f"INSERT OR IGNORE with ON CONFLICT or RETURNING: {sql}")
        text = _INSERT_OR_IGNORE.sub("INSERT INTO", text, count=1).rstrip().rstrip(";")
        text += " ON CONFLICT DO NOTHING"
    return text


def _without_comments(sql: str) -> str:
    """`sql` with its comments (`-- ...` to the line's end, `/* ... */`) outside quoted text
    and names replaced by a space."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif sql.startswith("--", i) or sql.startswith("/*", i):
            end = sql.find("\n", i) if ch == "-" else sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + (0 if ch == "-" else 2)
            out.append(" ")
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _outside_quotes(sql: str) -> str:
    """`sql` with quoted text and names blanked: what the checks above may look at."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
            out.append(" ")
        elif ch in "'\"":
            quote = ch
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _placeholders(sql: str, named: bool) -> str:
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch == "%":
            out.append("%%")
        elif quote:
            quote = "" if ch == quote else quote
            out.append(ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?" and not named:
            out.append("%s")
        elif ch == ":" and named and (name := _NAME.match(sql, i + 1)):
            out.append(f"%({name.group(0)})s")
            i = name.end()
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)
