"""Folders of image files, flat or one sub-folder per class: decoded at once or one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from aectl.config.errors import ConfigError, DataError
from aectl.datasets.raw import ArraySplit, RawData, one_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_PROGRESS_MIN_FILES = 300  # below this, decoding is quick enough that a bar is noise


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Image files by name; dot-files are skipped (macOS "._x.png" resource forks are not images)."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith(".") and p.is_file())


def list_image_folder(root) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """(files, labels, classes): images flat in root (no labels), or one sub-folder per class
    (label = index of the folder name in sorted order, as torchvision's ImageFolder)."""
    root = Path(root).expanduser()
    expected = f"a folder of {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images, flat or in one sub-folder per class"
    if not root.is_dir():
        raise DataError(f"{root}: folder does not exist; expected {expected}")
    flat = _images_in(root, recursive=False)
    per_class = {d.name: _images_in(d, recursive=True) for d in sorted(root.iterdir())
                 if d.is_dir() and not d.name.startswith(".")}
    per_class = {name: files for name, files in per_class.items() if files}
    if flat and per_class:
        raise DataError(f"{root}: holds images both at the top and in sub-folders ({next(iter(per_class))}/); "
                        f"expected {expected}, not both")
    if not flat and not per_class:
        raise DataError(f"{root}: no images found; expected {expected}")
    if flat:
        return flat, None, None
    files = [f for group in per_class.values() for f in group]
    labels = [i for i, group in enumerate(per_class.values()) for _ in group]
    return files, labels, list(per_class)


def _size_hw(size) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ConfigError("size", size, "a positive int or [height, width]")
    return hw


def _pil_mode(channels: int) -> str:
    if channels not in (1, 3):
        raise ConfigError("channels", channels, "1 (grayscale) or 3 (RGB)")
    return "L" if channels == 1 else "RGB"


def _decode_image(path: Path, size_hw: tuple[int, int], mode: str) -> torch.Tensor:
    """One image file → uint8 (C, H, W), converted to `mode` first so palettes resize smoothly."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft(mode, size_hw[::-1])  # JPEGs decode at a reduced scale (still >= size): much faster
            image = image.convert(mode).resize(size_hw[::-1], Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's ways to say "corrupt"
        raise DataError(f"{path}: cannot decode image ({one_line(exc)}); remove or replace the file") from exc
    pixels = np.asarray(image, dtype=np.uint8).reshape(size_hw[0], size_hw[1], -1)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def _progress(items: list, desc: str):
    if len(items) < _PROGRESS_MIN_FILES:
        return items
    from aectl.runtime.progress import progress_bar

    return progress_bar(items, desc=desc, unit="img")


def load_image_folder(root, *, size, channels: int) -> RawData:
    """Every image under root (png/jpg/jpeg/bmp/gif/webp) decoded, resized, into one uint8 (N, C, H, W)."""
    files, labels, classes = list_image_folder(root)
    size_hw, mode = _size_hw(size), _pil_mode(channels)
    x = torch.empty((len(files), channels, *size_hw), dtype=torch.uint8)
    for i, path in enumerate(_progress(files, "decoding images")):
        x[i] = _decode_image(path, size_hw, mode)
    y = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    return RawData({"all": ArraySplit(x, y)}, (0.0, 255.0), classes)


def estimate_folder_bytes(n_files: int, size, channels: int) -> int:
    """Bytes the decoded uint8 tensor of `n_files` images would take (to choose memory or streaming)."""
    height, width = _size_hw(size)
    return n_files * channels * height * width


class ImageFolderStream(Dataset):
    """The images of `load_image_folder`, decoded one per __getitem__, for folders larger than memory."""

    value_range = (0.0, 255.0)

    def __init__(self, root, *, size, channels: int):
        self.files, labels, self.classes = list_image_folder(root)
        self.labels = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        self.size_hw, self.mode = _size_hw(size), _pil_mode(channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 (C, H, W) image, int64 label); the label is -1 for a folder without classes."""
        label = self.labels[index] if self.labels is not None else torch.tensor(-1)
        return _decode_image(self.files[index], self.size_hw, self.mode), label
