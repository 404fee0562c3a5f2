"""DeepFashion2 data layer: category/landmark specification, annotation reader/validator/writer,
COCO-style conversion and retrieval ground truth. Needs no torch."""

from .annotations import AnnotationError, Dataset, ImageAnnotation, Item, load_dataset, read_annotation, validate_folder, write_annotation
from .spec import NUM_CATEGORIES, NUM_LANDMARKS, Category, categories, category, category_by_name, oks_sigmas

__all__ = [
    "AnnotationError",
    "Dataset",
    "ImageAnnotation",
    "Item",
    "load_dataset",
    "read_annotation",
    "validate_folder",
    "write_annotation",
    "NUM_CATEGORIES",
    "NUM_LANDMARKS",
    "Category",
    "categories",
    "category",
    "category_by_name",
    "oks_sigmas",
]
