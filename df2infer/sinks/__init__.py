"""Where results go, one protocol (sinks.base: write(result) / close(), context managers; Tee and PerSource
fan out): jsonl (one record per frame/image), video (fragmented MP4 that survives a kill), segments (either
of them cut by time or size, with retention, surviving a full disk), image_folder, window (an on-screen
preview), metrics (Prometheus), web (a live page), rtsp (RTSP out), mqtt (events to a broker, made by
events); annotate draws the pictures they write."""
