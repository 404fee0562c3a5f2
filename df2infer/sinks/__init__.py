"""Where results go, one protocol (sinks.base: write(result) / close(), context managers; Tee and PerSource
fan out): jsonl (one record per frame/image), video (fragmented MP4 that survives a kill), image_folder,
window (an on-screen preview); annotate draws the pictures they write."""
