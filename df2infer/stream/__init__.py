"""Video and camera streams: sources (one reader thread each), batching across sources, the
overlapped pipeline, tracking. See df2infer.stream.pipeline for the API."""

from df2infer.stream.parse import parse_source
from df2infer.stream.pipeline import FrameResult, Pipeline, format_summary, stream
from df2infer.stream.sources import Frame, ReconnectPolicy, Source, SourceError

__all__ = ["Frame", "FrameResult", "Pipeline", "ReconnectPolicy", "Source", "SourceError", "format_summary", "parse_source", "stream"]
