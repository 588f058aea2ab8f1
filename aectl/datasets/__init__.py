"""Datasets in their on-disk formats → train/val/test tensors in the model's range.

One module per format (idx, cifar, amat, tensor_file, image_folder, builtin) reads files into
a `RawData`; `registry` maps dataset.name to its reader; `load.load_dataset` splits, scales,
binarizes and limits the result the same way for every dataset.
"""

from aectl.datasets.amat import load_binarized_mnist
from aectl.datasets.builtin import load_digits, make_synthetic
from aectl.datasets.cifar import load_cifar10
from aectl.datasets.idx import load_mnist_family, read_idx
from aectl.datasets.image_folder import ImageFolderStream, estimate_folder_bytes, list_image_folder, load_image_folder
from aectl.datasets.load import available_memory_bytes, check_model_range, load_dataset
from aectl.datasets.raw import ArraySplit, RawData
from aectl.datasets.registry import LOADERS, default_data_root
from aectl.datasets.scaling import SCALE_MODES, apply_scaler, fit_scaler
from aectl.datasets.splits import DataSplits, StreamedSplit, min_examples, seeded_split
from aectl.datasets.tensor_file import TENSOR_FILE_EXTENSIONS, load_tensor_file

__all__ = [
    "ArraySplit", "DataSplits", "ImageFolderStream", "LOADERS", "RawData", "SCALE_MODES", "StreamedSplit",
    "TENSOR_FILE_EXTENSIONS", "apply_scaler", "available_memory_bytes", "check_model_range", "default_data_root",
    "estimate_folder_bytes", "fit_scaler", "list_image_folder", "load_binarized_mnist", "load_cifar10",
    "load_dataset", "load_digits", "load_image_folder", "load_mnist_family", "load_tensor_file", "make_synthetic",
    "min_examples", "read_idx", "seeded_split",
]
