"""An on-screen preview (`df2infer video --show`): the annotated frames in one OpenCV window per source."""

from __future__ import annotations

import logging
from collections.abc import Callable

from df2infer.results import FrameResult
from df2infer.sinks.annotate import annotated
from df2infer.sinks.base import Sink

log = logging.getLogger("df2infer.sinks")


class WindowSink(Sink):
    """imshow per source; q or Esc calls `on_quit` (e.g. Pipeline.stop). Without a GUI-enabled OpenCV it
    says so once (a warning naming the package to install) and shows nothing more."""

    def __init__(self, on_quit: Callable[[], None] | None = None):
        self.on_quit = on_quit
        self.enabled = True
        self._opened = False

    def write(self, result: FrameResult) -> None:
        if not self.enabled or not result.ok:
            return
        import cv2

        try:
            cv2.imshow(f"df2infer [{result.info.source_id}] {result.info.display_name}", annotated(result))
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            log.warning("--show needs an OpenCV with GUI support (opencv-python, not -headless): %s", str(e).strip())
            self.enabled = False
            return
        self._opened = True
        if key in (ord("q"), 27) and self.on_quit is not None:
            self.on_quit()

    def close(self) -> None:
        if self._opened:
            import cv2

            cv2.destroyAllWindows()
            self._opened = False
