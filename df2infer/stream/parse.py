"""What a source string means (parse_source) and the reader that runs it (open_sources): OpenCV's
(df2infer.stream.sources) for files, image folders, webcams by number and plain network streams;
GStreamer's (df2infer.stream.gst) for csi://, v4l2://, /dev/videoN, pipeline strings and rtsp:// with
hw_decode. The table of source strings is in df2infer.stream.sources."""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from collections.abc import Callable

from df2infer.credentials import CredentialError, expand_env, quiet_native_logs, redact, remember
from df2infer.images import IMAGE_SUFFIXES, is_image_path, list_images
from df2infer.stream.gst import GstSource, gst_available, parse_gst_source
from df2infer.stream.sources import NETWORK_SCHEMES, ReconnectPolicy, Source, SourceError, SourceSpec, expand_sources

log = logging.getLogger("df2infer.stream")


def parse_source(text: str, hw_decode: bool = False) -> SourceSpec:
    """SourceSpec for one source string (see the module doc). Raises SourceError naming it (redacted).
    `${NAME}` references are expanded from the environment; the spec keeps the unexpanded text."""

    given = text.strip()
    try:
        t = expand_env(given)
    except CredentialError as e:
        raise SourceError(str(e)) from None
    remember(t)  # its secrets are redacted wherever they turn up from now on
    shown = redact(given)
    spec = _parse(t, shown, hw_decode)
    spec.text = given
    if spec.kind in ("network", "gstreamer"):
        quiet_native_logs()
    return spec


def _parse(t: str, shown: str, hw_decode: bool) -> SourceSpec:
    """The SourceSpec of the expanded source string t (its text is set by the caller); errors name `shown`."""
    import cv2

    low = t.lower()
    if t.isdigit():
        return SourceSpec(t, "webcam", True, int(t), cv2.CAP_ANY)
    if low.startswith(("csi://", "v4l2://")) or "!" in t or (hw_decode and low.startswith(("rtsp://", "rtsps://"))):
        return parse_gst_source(t, hw_decode=hw_decode)
    if low.startswith("/dev/video"):
        if gst_available():  # GStreamer's v4l2src; OpenCV's V4L2 backend when the bindings are missing
            return parse_gst_source(t)
        return SourceSpec(t, "webcam", True, t, cv2.CAP_V4L2)
    if low.startswith(NETWORK_SCHEMES):
        return SourceSpec(t, "network", True, t, cv2.CAP_FFMPEG)
    if os.path.isdir(t):
        files = [str(p) for p in list_images(t)]
        if not files:
            raise SourceError(f"{shown}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
        return SourceSpec(t, "images", False, files)
    if any(c in t for c in "*?["):
        files = sorted(f for f in glob.glob(t, recursive=True) if is_image_path(f))
        if not files:
            raise SourceError(f"{shown}: this glob matches no images")
        return SourceSpec(t, "images", False, files)
    if not os.path.exists(t):
        raise SourceError(f"{shown}: no such file, folder, camera or stream URL")
    if is_image_path(t):
        return SourceSpec(t, "images", False, [t])
    return SourceSpec(t, "file", False, t, cv2.CAP_ANY)


def open_sources(
    texts: list[str],
    policy: ReconnectPolicy | None = None,
    queue_size: int = 8,
    loop: bool = False,
    notify: Callable[[], None] | None = None,
    hw_decode: bool = False,
    max_frames: int | None = None,
) -> tuple[list[Source], list[str]]:
    """Sources for the strings (not started) and the errors of those that cannot be parsed; a bad
    source never stops the others."""
    sources, errors = [], []
    for i, t in enumerate(expand_sources(texts)):
        try:
            spec = parse_source(t, hw_decode=hw_decode)
        except SourceError as e:
            errors.append(redact(str(e)))
            log.error("%s", e)
            continue
        cls: type[Source] = GstSource if spec.kind == "gstreamer" else Source
        sources.append(
            cls(
                spec,
                i,
                policy=dataclasses.replace(policy) if policy else None,
                queue_size=queue_size,
                loop=loop,
                notify=notify,
                max_frames=max_frames,
            )
        )
    return sources, errors
