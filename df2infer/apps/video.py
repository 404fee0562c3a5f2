"""`df2infer video SOURCE... [--model M] [--out DIR] [--show] [--batch N] [--conf C] [--track] [--keep-duplicates]`

Runs the model over video files, image folders/globs, cameras (0, /dev/video0, csi://0), network
streams (rtsp://, http(s):// MJPEG/MPEG-TS/HLS), GStreamer pipelines and .streams files, several at
once, batched into one inference call. Writes DIR/detections.jsonl (one record per frame, all sources,
flushed as written; schema in docs/video.md) and DIR/<id>_<name>.mp4 per source (annotated, fragmented MP4: plays even after a
kill). SIGINT/SIGTERM stop the readers, finish the frames in flight and close the files. Prints a
summary every --summary-every seconds and at the end (fps, per-stage p50/p99, dropped frames,
reconnects). Exit status: 0 done, 1 when a source failed (the others still ran), 2 on usage errors,
130/143 after SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import time
from pathlib import Path

from df2infer.apps.common import CliExit, add_decode_arguments, add_model_arguments, decode_options, load_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources",
        nargs="+",
        help="video files, image folders or globs, camera index, /dev/videoN, csi://N, "
        "rtsp://, http(s)://, a GStreamer pipeline, or a .streams file (one source per line)",
    )
    add_model_arguments(p)
    p.add_argument("--out", default="df2infer_video_out", help="output folder (default: %(default)s)")
    p.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs an OpenCV with GUI)")
    p.add_argument("--batch", type=int, default=None, help="frames per inference call across sources (default: the model's max_batch)")
    p.add_argument("--track", action="store_true", help="stable item ids across frames (re-identified by the model's embeddings)")
    add_decode_arguments(p)
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


def _outputs(args: argparse.Namespace, pipe, out: Path):
    """The sinks of `df2infer video`: the JSONL of every frame, an annotated video per source, the window."""
    from df2infer.sinks.base import PerSource, Tee
    from df2infer.sinks.jsonl import JsonlSink
    from df2infer.sinks.video import VideoSink
    from df2infer.sinks.window import WindowSink

    jsonl = JsonlSink(out / "detections.jsonl", masks=args.masks_json, embeddings=args.embeddings)
    videos = PerSource(lambda info: VideoSink(out / f"{info.source_id}_{_safe_name(info.display_name)}.mp4", fps=info.fps or 30.0))
    sinks: list = [jsonl] + ([] if args.no_video else [videos]) + ([WindowSink(on_quit=pipe.stop)] if args.show else [])
    return Tee(sinks), jsonl, videos


def _open_pipeline(args: argparse.Namespace):
    from df2infer.stream import Pipeline, ReconnectPolicy, SourceError

    policy = ReconnectPolicy(
        open_timeout_s=args.open_timeout, read_timeout_s=args.read_timeout, max_delay_s=args.backoff_max, max_failures=args.max_failures
    )
    options = decode_options(args, "video", embeddings=args.embeddings or args.track, masks=not args.no_video or args.masks_json)
    model = load_model(args, "video", options)
    try:
        pipe = Pipeline(
            args.sources,
            model,
            options=options,
            batch=args.batch,
            track=args.track,
            loop=args.loop,
            policy=policy,
            max_frames=args.max_frames,
            hw_decode=args.hw_decode,
        )
    except SourceError as e:
        raise CliExit(2, f"df2infer video: {e}") from e
    for err in pipe.errors:
        print(f"df2infer video: skipped: {err}", file=sys.stderr)
    print(f"model: {model}; sources: " + ", ".join(f"[{s.id}] {s.name} ({s.spec.kind})" for s in pipe.sources), file=sys.stderr)
    return pipe


def run(args: argparse.Namespace) -> int:
    from df2infer.stream import format_summary

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pipe = _open_pipeline(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    caught: list[int] = []

    def on_signal(signum, _frame):
        caught.append(signum)
        pipe.stop()  # readers stop; the frames in flight are still written, then the files are closed

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    if not args.no_progress and not args.loop:
        total = _file_frames(pipe.sources)
        if total is not None:
            from tqdm import tqdm

            bar = tqdm(total=total or None, unit="frame", desc="video", file=sys.stderr)
    say = bar.write if bar is not None else (lambda m: print(m, file=sys.stderr))
    sink, jsonl, videos = _outputs(args, pipe, out)
    last_summary = time.perf_counter()
    try:
        with sink:
            for r in pipe:
                sink.write(r)
                if bar is not None:
                    bar.update(1)
                if args.summary_every and time.perf_counter() - last_summary >= args.summary_every:
                    last_summary = time.perf_counter()
                    say("progress: " + format_summary(pipe.summary()))
    finally:
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
    print(f"-> {out}/detections.jsonl ({jsonl.lines} lines)" + "".join(f", {v.path}" for v in videos.sinks.values()))
    if caught:
        return 128 + caught[0]
    return 1 if summary["failed_sources"] else 0
