"""Camera credentials: kept in the reader, redacted everywhere else.

One place for everything that touches a secret in a source or output string:

- `redact(text)`: the text with every secret replaced by `***`: the password of each URL's userinfo
  (`rtsp://admin:***@cam/1`), a userinfo without a password in full (`https://***@host`, it is
  usually a token), the values of secret-looking `key=value` pairs (`?password=***`, `&token=***`,
  GStreamer's `user-pw=***`), and every secret seen so far by `remember(text)` wherever it appears
  (in its raw, percent-decoded, re-encoded and HTTP basic-auth base64 forms). Robust to passwords
  holding `@ : / ? # %`: the userinfo runs to the last `@` of the URL when what precedes it looks
  like `user:password`, so an unencoded `@` or `/` in a password over-redacts rather than leaks.
- `expand_env(text)`: `${NAME}` replaced by the environment variable NAME, so a password need not
  be written on the command line (where the process list and the shell history show it) nor in a
  `.streams` file. `$${` stands for a literal `${`.
- `check_private_file(path)`: refuses a file that holds a literal password and that other users can
  read (a `.streams` file).
- `quiet_native_logs()`: FFmpeg (through OpenCV) and OpenCV's own capture backends print URLs in
  their errors; their log levels are lowered unless the user set them, and the failure is reported
  by df2infer in its own words.
- `RedactingOutput`: a filter on file descriptors 1 and 2 for the CLI, so that whatever a native
  library still prints (FFmpeg at the level the user asked for, GStreamer with GST_DEBUG) passes `redact`.
"""

from __future__ import annotations

import base64
import os
import re
import select
import stat
import sys
import threading
from urllib.parse import quote, unquote

from df2infer.errors import InputError

MASK = "***"
MIN_SECRET_LEN = 4  # shorter secrets are redacted where they stand in a URL, not searched for everywhere

_URL = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)([^\s\"'<>]*)")
# key=value pairs (query strings, GStreamer element properties, log text); the key decides
_PAIR = re.compile(r"(?<![\w.-])([A-Za-z][\w.-]*)(\s*=\s*)(\"[^\"]*\"|'[^']*'|[^&;#\s\"'!,)]+)")
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "auth", "credential", "signature", "session", "apikey", "api_key", "api-key")
_SECRET_ENDS = {"pw", "key", "sig"}  # the last part of a key split at - _ . (user-pw, x-api-key; not key-int-max)
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{([^}]*)\}?")

_lock = threading.Lock()
_known: set[str] = set()
_shown: dict[str, str] = {}  # redact()'s answers (a stream's name recurs every frame); cleared when a secret is learnt


class CredentialError(InputError, ValueError):
    """A `${NAME}` that cannot be expanded, or a credentials-bearing file others can read."""


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in _SECRET_WORDS) or re.split(r"[-_.]", k)[-1] in _SECRET_ENDS


def _split_userinfo(rest: str) -> tuple[str, str] | None:
    """(userinfo, remainder) of the text after `scheme://`, or None when it has no userinfo."""
    at = rest.rfind("@")
    if at < 0:
        return None
    cand = rest[:at]
    first_sep = min((i for i in (cand.find(c) for c in "/?#") if i >= 0), default=-1)
    colon = cand.find(":")
    if first_sep < 0 or (0 <= colon < first_sep):
        return cand, rest[at + 1 :]  # an authority's userinfo, or user:password with / ? # unencoded
    auth_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, auth_end)
    if at < 0:
        return None
    return rest[:at], rest[at + 1 :]


def _secret_values(text: str) -> list[tuple[str, str | None]]:
    """(secret as written, its user for a password) for each secret part of `text`."""
    found: list[tuple[str, str | None]] = []
    for m in _URL.finditer(text):
        ui = _split_userinfo(m.group(2))
        if ui is not None and ui[0]:
            user, sep, password = ui[0].partition(":")
            if not sep:
                found.append((user, None))
            elif password:
                found.append((password, user))
    for m in _PAIR.finditer(text):
        if _is_secret_key(m.group(1)):
            v = m.group(3).strip("\"'")
            if v and v != MASK:
                found.append((v, None))
    return found


def secrets_in(text: str) -> set[str]:
    """The secret parts of a source or output string (passwords, tokens), each in the forms a
    library might print: as written, percent-decoded, re-encoded, and the basic-auth base64."""
    found: set[str] = set()
    for value, user in _secret_values(text):
        found |= {value, unquote(value), quote(unquote(value), safe="")}
        if user is not None:
            found.add(base64.b64encode(f"{unquote(user)}:{unquote(value)}".encode()).decode())
    return {s for s in found if s and s != MASK}


def remember(text: str) -> None:
    """Remember the secrets of `text` so that `redact` removes them wherever they appear later
    (in a native library's message that quotes a URL piece by piece, for instance)."""
    new = {s for s in secrets_in(text) if len(s) >= MIN_SECRET_LEN}
    if new:
        with _lock:
            _known.update(new)
            _shown.clear()


def _redact_url(m: re.Match) -> str:
    scheme, rest = m.group(1), m.group(2)
    ui = _split_userinfo(rest)
    if ui is None or not ui[0]:
        return m.group(0)
    user, sep, _ = ui[0].partition(":")
    shown = f"{user}:{MASK}" if sep else MASK
    return f"{scheme}{shown}@{ui[1]}"


def _redact_pair(m: re.Match) -> str:
    if not _is_secret_key(m.group(1)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{MASK}"


def redact(text: str) -> str:
    """`text` with its secrets and every remembered secret replaced by `***` (see the module doc)."""
    if not text:
        return text
    hit = _shown.get(text)
    if hit is not None:
        return hit
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    out = _URL.sub(_redact_url, text)
    out = _PAIR.sub(_redact_pair, out)
    for s in known:
        if s in out:
            out = out.replace(s, MASK)
    with _lock:
        if len(known) == len(_known):  # no secret learnt meanwhile (the set only grows): the answer holds
            if len(_shown) > 4096:
                _shown.clear()
            _shown[text] = out
    return out


def has_literal_secret(text: str) -> bool:
    """True when `text` itself holds a secret (not only `${NAME}` references to one)."""
    return any("${" not in v for v, _ in _secret_values(text))


def expand_env(text: str, where: str = "") -> str:
    """`text` with each `${NAME}` replaced by the environment variable NAME (`$${` is a literal `${`).
    Raises CredentialError naming the variable (never a value) when NAME is unset or malformed."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$${":
            return "${"
        name = m.group(1)
        if name is None:
            raise CredentialError(f"{where or redact(text)}: {m.group(0)!r} is not a ${{NAME}} reference (NAME: letters, digits, _)")
        if name not in os.environ:
            raise CredentialError(f"{where or redact(text)}: environment variable {name} is not set (referenced as ${{{name}}})")
        return os.environ[name]

    if "${" not in text:
        return text
    return _ENV.sub(sub, text)


def check_private_file(path: str | os.PathLike, text: str) -> None:
    """Refuse a file whose contents hold a literal password while other users may read it."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH) and has_literal_secret(text):
        raise CredentialError(
            f"{os.fspath(path)}: holds a password and other users can read it (mode {stat.filemode(mode)}); "
            f"`chmod 600 {os.fspath(path)}`, or write the password as ${{NAME}} and set NAME in the environment"
        )


def quiet_native_logs() -> None:
    """Lower FFmpeg's (through OpenCV) and OpenCV's log levels unless the user set them: their
    messages may quote a source URL. FFmpeg's level is read at the first FFmpeg capture of the process."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        try:
            import cv2

            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except (ImportError, AttributeError):  # an OpenCV without the logging utils: its default stays
            pass


class RedactingOutput:
    """Context manager: file descriptors 1 and 2 (Python's and every native library's stdout and
    stderr; OpenCV prints FFmpeg's log to stdout) pass through `redact` on their way out. Lines go
    through whole; a partial line (a progress bar) after a 50 ms pause. POSIX only (elsewhere a no-op)."""

    def __init__(self, fds: tuple[int, ...] = (1, 2)) -> None:
        self.fds = fds
        self._pipes: list[tuple[int, int, int, threading.Thread]] = []  # (fd, saved copy, read end, pump)

    def __enter__(self) -> RedactingOutput:
        if os.name != "posix":
            return self
        for fd in self.fds:
            _flush(fd)
            saved = os.dup(fd)
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            t = threading.Thread(target=_pump, args=(r, saved), name=f"df2infer-redact-fd{fd}", daemon=True)
            t.start()
            self._pipes.append((fd, saved, r, t))
        return self

    def __exit__(self, *exc) -> None:
        for fd, saved, r, t in self._pipes:
            _flush(fd)
            os.dup2(saved, fd)  # closes the pipe's only write end: the pump reads to the end and stops
            t.join(5.0)
            os.close(saved)
            os.close(r)
        self._pipes = []


def _flush(fd: int) -> None:
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    if stream is not None:
        stream.flush()


def _pump(r: int, out: int) -> None:
    """Copy the pipe `r` to the descriptor `out`, redacted line by line."""

    broken = False

    def emit(data: bytes) -> None:
        nonlocal broken
        if data and not broken:
            view = memoryview(redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
            try:
                while view:
                    view = view[os.write(out, view) :]
            except OSError:  # the reader went away (`| head`): keep draining so the writers never block
                broken = True

    buf = b""
    while True:
        ready, _, _ = select.select([r], [], [], 0.05 if buf else None)
        if not ready:
            emit(buf)
            buf = b""
            continue
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        if cut:
            emit(buf[:cut])
            buf = buf[cut:]
        if len(buf) > 65536:
            emit(buf)
            buf = b""
    emit(buf)
