"""Where results go: annotate (drawing), jsonl (one line per frame/image), video (fragmented MP4
that survives a kill), image_folder, result_files (DeepFashion2/COCO result JSON)."""
