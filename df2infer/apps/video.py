"""`df2infer video SOURCE... [--model M] [--out DIR] [--show] [--batch N] [--conf C] [--track] [--keep-duplicates]`

Runs the model over video files, image folders/globs, cameras (0, /dev/video0, csi://0), network
streams (rtsp://, http(s):// MJPEG/MPEG-TS/HLS), GStreamer pipelines and .streams files, several at
once, batched into one inference call. Writes DIR/detections.jsonl (one line per frame, all sources,
flushed as written) and DIR/<id>_<name>.mp4 per source (annotated, fragmented MP4: plays even after a
kill). SIGINT/SIGTERM stop the readers; every frame already decoded is still run and written, then
the files are closed (a second signal stops at once). Credentials in source URLs are redacted in
every output; `${NAME}` in a source is read from the environment (keeps passwords off the command
line). Prints a
summary every --summary-every seconds and at the end (fps, per-stage p50/p99, dropped frames,
reconnects). Exit status: 0 done, 1 when a source failed (the others still ran), 2 on usage errors,
130/143 after SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources",
        nargs="+",
        help="video files, image folders or globs, camera index, /dev/videoN, csi://N, "
        "rtsp://, http(s)://, a GStreamer pipeline, or a .streams file (one source per line)",
    )
    p.add_argument("--model", default=None, help="model artifact (.onnx, .engine); default: the bundled model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--out", default="df2infer_video_out", help="output folder (default: %(default)s)")
    p.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs an OpenCV with GUI)")
    p.add_argument("--batch", type=int, default=None, help="frames per inference call across sources (default: the model's max_batch)")
    p.add_argument("--conf", type=float, default=0.3, help="minimum score (default: %(default)s)")
    p.add_argument("--track", action="store_true", help="stable item ids across frames (re-identified by the model's embeddings)")
    p.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep cross-category duplicates (default: one garment reported as two categories at IoU > 0.85 is shown once)",
    )
    p.add_argument("--no-video", action="store_true", help="write only the JSONL, no annotated video")
    p.add_argument("--masks-json", action="store_true", help="include RLE masks in the JSONL (slower)")
    p.add_argument("--embeddings", action="store_true", help="include embeddings in the JSONL")
    p.add_argument("--loop", action="store_true", help="restart files at their end (until Ctrl-C)")
    p.add_argument("--max-frames", type=int, default=None, help="stop each source after this many frames")
    p.add_argument("--summary-every", type=float, default=10.0, help="seconds between progress summaries (0: final only)")
    p.add_argument("--open-timeout", type=float, default=5.0, help="seconds to open a stream (default: %(default)s)")
    p.add_argument("--read-timeout", type=float, default=5.0, help="seconds a frame may take before the stream counts as stalled")
    p.add_argument("--backoff-max", type=float, default=8.0, help="longest wait between reconnect attempts, s (default: %(default)s)")
    p.add_argument("--max-failures", type=int, default=10, help="consecutive failed attempts before a source is dropped")
    p.add_argument("--hw-decode", action="store_true", help="rtsp:// through the Jetson hardware decoder (GStreamer nvv4l2decoder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _safe_name(text: str) -> str:
    base = text.rstrip("/").split("/")[-1] or text
    base = re.sub(r"\.[A-Za-z0-9]{2,4}$", "", base)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:60] or "source"


def _file_frames(sources) -> int | None:
    """Total frames of the file sources (for the progress bar); None when any source is live."""
    import cv2

    total = 0
    for s in sources:
        if s.live:
            return None
        if s.spec.kind == "images":
            total += len(s.spec.target)
        else:
            cap = cv2.VideoCapture(s.spec.target)
            total += max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            cap.release()
    return total


def run(args: argparse.Namespace) -> int:
    from df2infer.credentials import RedactingOutput

    # FFmpeg's errors (a refused password, say) are worth showing once the stream they go through is redacted
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "16")  # AV_LOG_ERROR
    with RedactingOutput():  # whatever a native library prints (stdout too) passes the same redaction as ours
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import df2infer
    from df2infer.credentials import has_literal_secret
    from df2infer.sinks.annotate import annotate
    from df2infer.sinks.jsonl import JsonlSink, frame_record
    from df2infer.sinks.video import VideoSink
    from df2infer.stream import Pipeline, ReconnectPolicy, SourceError, format_summary

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if any(has_literal_secret(s) for s in args.sources):
        print(
            "df2infer video: warning: a password on the command line is visible to every user in the process list and "
            "stays in the shell history; write it as ${NAME} (in single quotes) and set NAME in the environment",
            file=sys.stderr,
        )
    policy = ReconnectPolicy(
        open_timeout_s=args.open_timeout, read_timeout_s=args.read_timeout, max_delay_s=args.backoff_max, max_failures=args.max_failures
    )
    try:
        model = df2infer.load(args.model, device=args.device)
    except (FileNotFoundError, df2infer.ModelLoadError, df2infer.ContractError, df2infer.DeviceError, ValueError) as e:
        print(f"df2infer video: {e}", file=sys.stderr)
        return 2
    try:
        pipe = Pipeline(
            args.sources,
            model,
            batch=args.batch,
            conf=args.conf,
            track=args.track,
            keep_duplicates=args.keep_duplicates,
            embeddings=args.embeddings or args.track,
            masks=not args.no_video or args.masks_json,
            loop=args.loop,
            policy=policy,
            max_frames=args.max_frames,
            hw_decode=args.hw_decode,
        )
    except SourceError as e:
        print(f"df2infer video: {e}", file=sys.stderr)
        return 2
    for err in pipe.errors:
        print(f"df2infer video: skipped: {err}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"model: {model}; sources: " + ", ".join(f"[{s.id}] {s.name} ({s.spec.kind})" for s in pipe.sources), file=sys.stderr)

    caught: list[int] = []

    def on_signal(signum, _frame):
        caught.append(signum)
        if len(caught) == 1:
            pipe.stop()  # readers stop; every frame already decoded is still run and written, then the files are closed
        else:
            pipe.abort()  # a second signal: stop now

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    if not args.no_progress and not args.loop:
        total = _file_frames(pipe.sources)
        if total is not None:
            from tqdm import tqdm

            bar = tqdm(total=total or None, unit="frame", desc="video", file=sys.stderr)
    say = bar.write if bar is not None else (lambda m: print(m, file=sys.stderr))
    jsonl = JsonlSink(out / "detections.jsonl")
    videos: dict[int, VideoSink] = {}
    window = args.show
    last_summary = time.perf_counter()
    try:
        for r in pipe:
            jsonl.write(frame_record(r, masks=args.masks_json, embeddings=args.embeddings))
            if not args.no_video or window:
                img = annotate(r.image, r.detections)
                if not args.no_video:
                    v = videos.get(r.source_id)
                    if v is None:
                        src = pipe.sources[[s.id for s in pipe.sources].index(r.source_id)]
                        v = videos[r.source_id] = VideoSink(out / f"{r.source_id}_{_safe_name(r.source)}.mp4", fps=src.fps or 30.0)
                    v.write(img, r.video_time())
                if window:
                    window = _show(f"df2infer [{r.source_id}] {r.source}", img, pipe)
            if bar is not None:
                bar.update(1)
            if args.summary_every and time.perf_counter() - last_summary >= args.summary_every:
                last_summary = time.perf_counter()
                say("progress: " + format_summary(pipe.summary()))
    finally:
        for v in videos.values():
            v.close()
        jsonl.close()
        if bar is not None:
            bar.close()
        for s, h in old.items():
            signal.signal(s, h)
    summary = pipe.summary()
    print("summary: " + format_summary(summary), file=sys.stderr)
    for s in summary["sources"]:
        print(
            f"  [{s['id']}] {s['source']}: {s['state']}, {s['frames']} frames read, {s['dropped']} dropped, "
            f"{s['reconnects']} reconnects" + (f"; {s['error']}" if s["error"] else ""),
            file=sys.stderr,
        )
    print(f"-> {out}/detections.jsonl ({jsonl.lines} lines)" + "".join(f", {v.path}" for v in videos.values()))
    if caught:
        return 128 + caught[0]
    return 1 if summary["failed_sources"] else 0


def _show(title: str, img, pipe) -> bool:
    """imshow; False (window off, said once) when this OpenCV has no GUI. q or Esc stops."""
    import cv2

    try:
        cv2.imshow(title, img)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error as e:
        print(f"df2infer video: --show needs an OpenCV with GUI support (opencv-python, not -headless): {e}".strip(), file=sys.stderr)
        return False
    if key in (ord("q"), 27):
        pipe.stop()
    return True
