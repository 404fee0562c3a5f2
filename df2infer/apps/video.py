"""`df2infer video SOURCE... [--model M] [--out DIR] [--show] [--batch N] [--conf C] [--track] [--keep-duplicates]`

Runs the model over video files, image folders/globs, cameras (0, /dev/video0, csi://0), network
streams (rtsp://, http(s):// MJPEG/MPEG-TS/HLS), GStreamer pipelines and .streams files, several at
once, batched into one inference call. Writes DIR/detections.jsonl (one record per frame, all sources,
flushed as written; schema in docs/video.md) and DIR/<id>_<name>.mp4 per source (annotated, fragmented MP4: plays even after a
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
    p.add_argument("--vid-stride", type=int, default=1, help="process every N-th frame of each source (default: every frame)")
    p.add_argument("--max-fps", type=float, default=None, help="process at most this many frames per second of each source")
    p.add_argument(
        "--hw-decode",
        action="store_true",
        help="rtsp:// through GStreamer: nvv4l2decoder where present (Jetson), else software",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--metrics",
        default=None,
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST: 127.0.0.1 unless given; docs/video.md)",
    )
    p.add_argument(
        "--serve",
        default=None,
        metavar="[HOST:]PORT",
        help="a live page (annotated pictures and figures) at http://HOST:PORT/; HOST 127.0.0.1 unless given; "
        "bound elsewhere it needs a token ($DF2INFER_WEB_TOKEN or --serve-token-file)",
    )
    p.add_argument("--serve-token-file", default=None, metavar="FILE", help="the page's token: the first line of FILE")
    p.add_argument("--serve-cert", default=None, metavar="PEM", help="serve the page over HTTPS with this certificate")
    p.add_argument("--serve-key", default=None, metavar="PEM", help="the certificate's private key (when not in --serve-cert)")
    p.add_argument(
        "--rtsp-out",
        default=None,
        metavar="[HOST:]PORT[/PATH]",
        help="serve each source's annotated stream at rtsp://HOST:PORT/PATH/<source id> (H.264; PATH: live; HOST 127.0.0.1 unless given)",
    )
    p.add_argument(
        "--mqtt",
        default=None,
        metavar="[mqtts://][USER@]HOST[:PORT]/TOPIC",
        help="publish events (a summary per frame; tracks appearing and leaving) to an MQTT broker, QoS 1, under TOPIC/frame, "
        "TOPIC/appear, TOPIC/leave; the password comes from $DF2INFER_MQTT_PASSWORD (docs/video.md)",
    )
    p.add_argument("--mqtt-ca", default=None, metavar="FILE", help="CA certificates for mqtts:// (default: the system's)")
    p.add_argument(
        "--mqtt-queue-max",
        type=int,
        default=100_000,
        help="events kept on disk (OUT/mqtt_queue.sqlite) while the broker is unreachable; the oldest are dropped beyond it",
    )
    p.add_argument(
        "--leave-after", type=int, default=30, help="frames without a track before its leave event (--mqtt; default: %(default)s)"
    )
    p.add_argument(
        "--segment",
        default=None,
        metavar="LIMIT",
        help="cut the JSONL and the videos into segment files every LIMIT: a duration (30s, 10m, 1h) or a size (50MB, 1GB), "
        "or both joined by a comma (whichever comes first); a full disk then pauses writing instead of stopping the run",
    )
    p.add_argument(
        "--retain",
        default=None,
        metavar="N|SIZE",
        help="with --segment: keep at most N segments per file name (24), or SIZE bytes of them (2GB), or both (24,2GB); "
        "the oldest are deleted",
    )


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
        if s.spec.kind == "gstreamer":
            return None  # a pipeline's length is known only at its end
        if s.spec.kind == "images":
            total += len(s.spec.target)
        else:
            cap = cv2.VideoCapture(s.spec.target)
            total += max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            cap.release()
    return total


def _outputs(args: argparse.Namespace, pipe, out: Path):
    """The sinks of `df2infer video`: the JSONL of every frame, an annotated video per source (each cut into
    segments with --segment), the window."""
    from df2infer.sinks.base import PerSource, Tee
    from df2infer.sinks.jsonl import JsonlSink
    from df2infer.sinks.segments import Segmented, SegmentPolicy
    from df2infer.sinks.video import VideoSink
    from df2infer.sinks.window import WindowSink

    def jsonl_at(path) -> JsonlSink:
        return JsonlSink(path, masks=args.masks_json, embeddings=args.embeddings)

    def video_path(info) -> Path:
        return out / f"{info.source_id}_{_safe_name(info.display_name)}.mp4"

    if args.segment:
        try:
            policy = SegmentPolicy.parse(args.segment, args.retain)
        except ValueError as e:
            raise CliExit(2, f"df2infer video: {e}") from e
        jsonl = Segmented(jsonl_at, out / "detections.jsonl", policy)
        videos = PerSource(lambda info: Segmented(lambda p: VideoSink(p, fps=info.fps or 30.0), video_path(info), policy))
    else:
        if args.retain:
            raise CliExit(2, "df2infer video: --retain needs --segment (without segments there is nothing to delete)")
        jsonl = jsonl_at(out / "detections.jsonl")
        videos = PerSource(lambda info: VideoSink(video_path(info), fps=info.fps or 30.0))
    sinks: list = [jsonl] + ([] if args.no_video else [videos]) + ([WindowSink(on_quit=pipe.stop)] if args.show else [])
    if args.metrics:
        from df2infer.sinks.metrics import MetricsSink

        host, port = parse_bind(args.metrics, "--metrics")
        m = MetricsSink(port, host, pipeline=pipe, skipped=lambda: _skipped(jsonl, videos, sinks))
        print(f"metrics: http://{host}:{m.port}/metrics", file=sys.stderr)
        sinks.append(m)
    if args.serve:
        from df2infer.sinks.web import WebSink, load_token

        host, port = parse_bind(args.serve, "--serve")
        try:
            token = load_token(args.serve_token_file)
            web = WebSink(port, host, token=token, pipeline=pipe, certfile=args.serve_cert, keyfile=args.serve_key)
        except (ValueError, OSError) as e:
            raise CliExit(2, f"df2infer video: {e}") from e
        print(f"page: {web.url}" + (" (add ?token=<your token> once)" if web.token else ""), file=sys.stderr)  # never the token
        sinks.append(web)
    if args.rtsp_out:
        from df2infer.sinks.rtsp import RtspOutSink

        bind, _, path = args.rtsp_out.partition("/")
        host, port = parse_bind(bind, "--rtsp-out")
        try:
            rtsp = RtspOutSink(port, host, path=path or "live")
        except (RuntimeError, OSError) as e:
            raise CliExit(2, f"df2infer video: {e}") from e
        print(f"rtsp out: {rtsp.url(0).rsplit('/', 1)[0]}/<source id>", file=sys.stderr)
        sinks.append(rtsp)
    if args.mqtt:
        from df2infer.sinks.mqtt import MqttSink, MqttTarget

        try:
            target = MqttTarget.parse(args.mqtt)
        except ValueError as e:
            raise CliExit(2, f"df2infer video: {e}") from e
        mq = MqttSink(target, out / "mqtt_queue.sqlite", max_queue=args.mqtt_queue_max, leave_after=args.leave_after, ca_file=args.mqtt_ca)
        print(f"mqtt: {target} (events queue: {mq.queue.path})", file=sys.stderr)
        sinks.append(mq)
    return Tee(sinks), jsonl, videos


def parse_bind(text: str, option: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """[HOST:]PORT -> (host, port); the host defaults to the loopback address (nothing leaves the device unasked)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliExit(2, f"df2infer video: {option} {text!r}: expected [HOST:]PORT with PORT a number 0..65535")
    return host, int(port)


def _skipped(jsonl, videos, sinks: list) -> dict[str, int]:
    """Frames each output did not write (files: a full disk; RTSP out: a client's encoder behind), for the metrics."""
    out = {"jsonl": getattr(jsonl, "skipped", 0)}
    for info_id, v in videos.sinks.items():
        out[f"video[{info_id}]"] = getattr(v, "skipped", 0)
    for s in sinks:
        if s is not jsonl and isinstance(getattr(s, "skipped", None), int):  # RtspOutSink -> "rtspout"
            out[type(s).__name__.removesuffix("Sink").lower()] = s.skipped
        if isinstance(getattr(s, "dropped", None), int):  # MqttSink: events dropped from a full queue
            out[type(s).__name__.removesuffix("Sink").lower()] = s.dropped
    return out


def _written(sink) -> str:
    """What a file sink wrote, for the closing line."""
    if hasattr(sink, "segments"):
        skipped = f", {sink.skipped} not written: disk full" if sink.skipped else ""
        return f"{sink.folder}/{sink.stem}.*{sink.suffix} ({len(sink.segments)} segments, {sink.written} frames{skipped})"
    return f"{sink.path} ({sink.lines} lines)" if hasattr(sink, "lines") else str(sink.path)


def _open_pipeline(args: argparse.Namespace):
    from df2infer.credentials import has_literal_secret
    from df2infer.stream import Pipeline, ReconnectPolicy, SourceError

    if any(has_literal_secret(s) for s in args.sources):
        print(
            "df2infer video: warning: a password on the command line is visible to every user in the process list and "
            "stays in the shell history; write it as ${NAME} (in single quotes) and set NAME in the environment",
            file=sys.stderr,
        )
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
            vid_stride=args.vid_stride,
            max_fps=args.max_fps,
        )
    except (SourceError, ValueError) as e:
        raise CliExit(2, f"df2infer video: {e}") from e
    for err in pipe.errors:
        print(f"df2infer video: skipped: {err}", file=sys.stderr)
    print(f"model: {model}; sources: " + ", ".join(f"[{s.id}] {s.name} ({s.spec.kind})" for s in pipe.sources), file=sys.stderr)
    return pipe


def run(args: argparse.Namespace) -> int:
    from df2infer.credentials import RedactingOutput

    # FFmpeg's errors (a refused password, say) are worth showing once the stream they go through is redacted
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "16")  # AV_LOG_ERROR
    with RedactingOutput():  # whatever a native library prints (stdout too) passes the same redaction as ours
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from df2infer.stream import format_summary

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pipe = _open_pipeline(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    print("-> " + ", ".join(_written(s) for s in [jsonl, *videos.sinks.values()]))
    if caught:
        return 128 + caught[0]
    return 1 if summary["failed_sources"] else 0
