"""The sink protocol: where results go. A sink has `write(result)` (a results.FrameResult: frame facts,
detections, image) and `close()`, and is a context manager. `Tee` writes each result to several sinks;
`PerSource` opens one sink per source (e.g. one video file per camera) on its first frame.

A new output (a file format, a stream, a message queue) is one class with write() and close(),
subclassing Sink for the context manager."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from df2infer.results import FrameInfo, FrameResult


@runtime_checkable
class SinkProtocol(Protocol):
    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class Sink:
    """Base of the sinks: the context manager around write()/close(); close() must be idempotent."""

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Tee(Sink):
    """Each result to every sink, in order; close() closes them all (the first error is raised after)."""

    def __init__(self, sinks: Iterable[SinkProtocol]):
        self.sinks = list(sinks)

    def write(self, result: FrameResult) -> None:
        for s in self.sinks:
            s.write(result)

    def close(self) -> None:
        close_all(self.sinks)


class PerSource(Sink):
    """One sink per source, made by `make(info)` on the source's first result (info: its FrameInfo);
    results go to their source's sink, by FrameInfo.source_id."""

    def __init__(self, make: Callable[[FrameInfo], SinkProtocol]):
        self.make = make
        self.sinks: dict[int, SinkProtocol] = {}

    def write(self, result: FrameResult) -> None:
        sink = self.sinks.get(result.info.source_id)
        if sink is None:
            sink = self.sinks[result.info.source_id] = self.make(result.info)
        sink.write(result)

    def close(self) -> None:
        close_all(self.sinks.values())


def close_all(sinks: Iterable[SinkProtocol]) -> None:
    """Close every sink even when one fails; then raise the first failure (never swallowed)."""
    first: BaseException | None = None
    for s in sinks:
        try:
            s.close()
        except BaseException as e:  # noqa: BLE001 - re-raised below after the others are closed
            first = first or e
    if first is not None:
        raise first


__all__ = ["PerSource", "Sink", "SinkProtocol", "Tee", "close_all"]
