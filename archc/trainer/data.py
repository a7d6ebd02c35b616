"""Datasets as whole uint8 tensors: every supported source parsed once into (N, C, H, W) images.

Holding a dataset as one tensor is what lets augmentation run on batches on the training device
(see augment.py) instead of per-sample PIL work in the hot loop.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from archc.compiler.guard import available_memory
from archc.compiler.train_config import TrainConfig
from archc.trainer.errors import DataError

# Augmentation defaults per dataset: (random-crop padding, horizontal flips). Digits are not
# mirror-symmetric, so MNIST-like sets and digits get shifts only; Fashion-MNIST's clothes flip.
AUGMENT_DEFAULTS: dict[str, tuple[int, bool]] = {
    "cifar10": (4, True),
    "cifar100": (4, True),
    "mnist": (2, False),
    "kmnist": (2, False),
    "fashion_mnist": (2, True),
    "digits": (1, False),
}
DIGITS_TEST_FRACTION = 0.2
SPLIT_SEED = 0
SYNTHETIC_SEED = 1234
IMAGEFOLDER_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class ImageData:
    """A labelled train/test split held as uint8 image tensors, plus its augmentation defaults."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    crop_padding: int
    hflip: bool

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one stored image."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images in [0,
        1]: the normalisation constants."""
        c = self.train_x.shape[1]
        total = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        for chunk in self.train_x.split(4096):
            values = chunk.to(torch.float64).div_(255.0)
            total += values.sum(dim=(0, 2, 3))
            squares += values.square().sum(dim=(0, 2, 3))
        count = self.train_x.numel() / c
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(1e-12).sqrt().clamp_min(1e-3)
        return mean.float(), std.float()

    def to(self, device: torch.device) -> ImageData:
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "archc" / "data"


@dataclass(frozen=True)
class Request:
    """What a dataset loader is asked for."""

    name: (
        str  # as given: "cifar10", or "imagefolder:PATH" for a loader registered as "imagefolder:"
    )
    cfg: TrainConfig
    root: Path  # the data directory, where downloads go
    default_shape: tuple[int, ...] | None  # the model's input (C, H, W), for sources of any shape

    @property
    def argument(self) -> str:
        """The part after ':' (imagefolder's PATH), or ''."""
        return self.name.split(":", 1)[1] if ":" in self.name else ""


Loader = Callable[[Request], ImageData]


@dataclass(frozen=True)
class Dataset:
    loader: Loader
    offline: bool  # needs no download


DATASETS: dict[str, Dataset] = {}


def dataset(*names: str, offline: bool = False) -> Callable[[Loader], Loader]:
    """Register a loader under `names` (a name ending in ':' takes an
    argument, e.g. 'imagefolder:').

    A plugin module (`--plugin`) can register its own datasets the same way.
    """

    def register(loader: Loader) -> Loader:
        for name in names:
            existing = DATASETS.get(name)
            if existing is not None and existing.loader is not loader:
                raise ValueError(
                    f"dataset name '{name}' is already registered by "
                    f"{existing.loader.__module__}.{existing.loader.__qualname__}"
                )
        for name in names:
            DATASETS[name] = Dataset(loader, offline)
        return loader

    return register


def dataset_names(offline_only: bool = False) -> list[str]:
    """The registered names as users type them ('imagefolder:PATH')."""
    return [
        n + "PATH" if n.endswith(":") else n
        for n, d in DATASETS.items()
        if d.offline or not offline_only
    ]


def load_dataset(cfg: TrainConfig, default_shape: tuple[int, ...] | None = None) -> ImageData:
    """The dataset cfg names, as uint8 tensors on the CPU, with cfg's subsets applied.

    default_shape is the model's input (C, H, W): the shape synthetic data takes unless cfg says.
    """
    name = cfg.dataset
    entry = DATASETS.get(name.split(":", 1)[0] + ":" if ":" in name else name)
    if entry is None:
        from archc.errors import did_you_mean

        raise DataError(
            f"unknown dataset '{name}'{did_you_mean(name, dataset_names())}; "
            f"choose one of {', '.join(dataset_names())}"
        )
    root = Path(cfg.data_dir).expanduser() if cfg.data_dir else default_data_dir()
    data = entry.loader(Request(name, cfg, root, default_shape))
    if cfg.train_subset is not None:
        data = replace(
            data, train_x=data.train_x[: cfg.train_subset], train_y=data.train_y[: cfg.train_subset]
        )
    if cfg.test_subset is not None:
        data = replace(
            data, test_x=data.test_x[: cfg.test_subset], test_y=data.test_y[: cfg.test_subset]
        )
    return data


def _missing(name: str, root: Path, why: str) -> DataError:
    return DataError(
        f"dataset {name} is not in {root} and {why}; copy it there or point --data-dir at a copy, "
        f"or train offline on {', '.join(dataset_names(offline_only=True))}"
    )


def _fetch(name: str, root: Path, present: bool, download: bool) -> None:
    """Download a torchvision dataset into root unless it is already there."""
    if present:
        return
    if not download:
        raise _missing(name, root, "downloading is off (--no-download)")
    import torchvision.datasets as tvd

    cls = {
        "cifar10": tvd.CIFAR10,
        "cifar100": tvd.CIFAR100,
        "mnist": tvd.MNIST,
        "fashion_mnist": tvd.FashionMNIST,
        "kmnist": tvd.KMNIST,
    }[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except (
        OSError,
        RuntimeError,
    ) as exc:  # URLError is an OSError; torchvision raises RuntimeError on bad md5
        raise _missing(name, root, f"downloading it failed ({_last_line(exc)})") from None


def _last_line(exc: BaseException) -> str:
    """The gist of a possibly multi-line error (torchvision lists every mirror it tried)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles; allow only what numpy arrays need, so
    a planted file cannot run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        entry = _ArrayUnpickler(f, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise pickle.UnpicklingError("not a dict")
    return entry


@dataset("cifar10", "cifar100")
def _cifar(request: Request) -> ImageData:
    import numpy as np
    import torchvision.datasets as tvd

    name, root, download = request.name, request.root, request.cfg.download
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    base = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    _fetch(name, root, all((base / f).is_file() for f in files), download)

    def part(entries: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for filename, _ in entries:
            entry = _unpickle(base / filename)
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

    try:
        train_x, train_y = part(cls.train_list)
        test_x, test_y = part(cls.test_list)
        classes = tuple(_unpickle(base / cls.meta["filename"])[cls.meta["key"]])
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise DataError(
            f"cannot read {name} from {base}: {_last_line(exc)}; "
            "delete the folder to download it again"
        ) from None
    pad, flip = AUGMENT_DEFAULTS[name]
    return _checked(ImageData(name, train_x, train_y, test_x, test_y, classes, pad, flip))


@dataset("mnist", "fashion_mnist", "kmnist")
def _mnist_like(request: Request) -> ImageData:
    import torchvision.datasets as tvd

    name, root, download = request.name, request.root, request.cfg.download
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "kmnist": tvd.KMNIST}[name]
    raw = root / cls.__name__ / "raw"
    files = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    _fetch(name, root, all((raw / f).is_file() for f in files), download)
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
    except (OSError, RuntimeError, ValueError, AssertionError) as exc:
        raise DataError(
            f"cannot read {name} from {raw}: {_last_line(exc)}; "
            "delete the folder to download it again"
        ) from None
    pad, flip = AUGMENT_DEFAULTS[name]
    return _checked(
        ImageData(
            name,
            train.data.unsqueeze(1).contiguous(),
            train.targets.long(),
            test.data.unsqueeze(1).contiguous(),
            test.targets.long(),
            tuple(train.classes),
            pad,
            flip,
        )
    )


@dataset("digits", offline=True)
def _digits(request: Request) -> ImageData:
    """scikit-learn's bundled 8x8 digits (values 0..16) with a fixed stratified 80/20 split."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=labels,
    )
    pad, flip = AUGMENT_DEFAULTS["digits"]
    return ImageData(
        "digits",
        torch.from_numpy(images[idx_train]),
        torch.from_numpy(labels[idx_train]),
        torch.from_numpy(images[idx_test]),
        torch.from_numpy(labels[idx_test]),
        tuple(str(d) for d in range(10)),
        pad,
        flip,
    )


@dataset("synthetic", offline=True)
def _synthetic(request: Request) -> ImageData:
    """Seeded images whose class sets a colour offset and a smooth mirror-symmetric pattern.

    Both survive the default crop and flip, so a small CNN separates the classes; the same
    sizes and shape always give the same images, whatever the training seed.
    """
    cfg, default_shape = request.cfg, request.default_shape
    shape = cfg.synthetic_shape or (
        tuple(default_shape) if default_shape and len(default_shape) == 3 else (3, 32, 32)
    )
    c, h, w = (int(v) for v in shape)
    k = cfg.synthetic_classes
    n_train, n_test = cfg.synthetic_size
    need, available = (n_train + n_test) * c * h * w, available_memory()  # uint8 images
    if available is not None and need > available // 2:
        raise DataError(
            f"synthetic data of {n_train + n_test:,} images {c}x{h}x{w} needs {need / 1e9:.1f} GB, "
            f"more than half of the {available / 1e9:.1f} GB available; lower synthetic_size"
        )
    gen = torch.Generator().manual_seed(SYNTHETIC_SEED)
    coarse = torch.randn(k, c, 3, 3, generator=gen)
    pattern = torch.nn.functional.interpolate(
        coarse, size=(h, w), mode="bilinear", align_corners=False
    )
    pattern = (pattern + pattern.flip(-1)) / 2
    offset = torch.randn(k, c, 1, 1, generator=gen)
    prototypes = 128.0 + 40.0 * pattern + 30.0 * offset

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randperm(n, generator=gen) % k
        images = torch.empty(n, c, h, w, dtype=torch.uint8)
        for start in range(0, n, 4096):
            y = labels[start : start + 4096]
            noise = torch.randn(len(y), c, h, w, generator=gen)
            images[start : start + 4096] = (
                (prototypes[y] + 35.0 * noise).round_().clamp_(0, 255).to(torch.uint8)
            )
        return images, labels

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return ImageData(
        "synthetic",
        train_x,
        train_y,
        test_x,
        test_y,
        tuple(str(i) for i in range(k)),
        max(1, h // 8),
        True,
    )


@dataset("imagefolder:", offline=True)
def _imagefolder(request: Request) -> ImageData:
    """torchvision's ImageFolder layout: ROOT/train/CLASS/* and
    ROOT/test|val/CLASS/*, or ROOT/CLASS/*
    split 80/20 with a fixed seed. Images are decoded once here; --resize applies while decoding."""
    root, resize = Path(request.argument).expanduser(), request.cfg.resize
    train_dir, test_dir = folder_splits(root)
    if test_dir is not None:
        classes, train_x, train_y = _read_folder(train_dir, resize)
        test_classes, test_x, test_y = _read_folder(test_dir, resize)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(
                f"imagefolder: {test_dir} has classes not in {root / 'train'}: {', '.join(unknown)}"
            )
        remap = torch.tensor([classes.index(c) for c in test_classes], dtype=torch.int64)
        test_y = remap[test_y]
    else:
        classes, images, labels = _read_folder(root, resize)
        if len(labels) < 2:
            raise DataError(
                f"imagefolder: {root} needs at least 2 images to split into train and test"
            )
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_test = max(1, round(IMAGEFOLDER_TEST_FRACTION * len(labels)))
        train_x, train_y = images[order[n_test:]], labels[order[n_test:]]
        test_x, test_y = images[order[:n_test]], labels[order[:n_test]]
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"imagefolder: train images are {_fmt(train_x)}, "
            f"test images {_fmt(test_x)}; pass --resize H[,W]"
        )
    return _checked(
        ImageData(
            f"imagefolder:{root}",
            train_x,
            train_y,
            test_x,
            test_y,
            tuple(classes),
            max(1, train_x.shape[2] // 8),
            True,
        )
    )


@dataset("shards:", offline=True)
def _shards(request: Request) -> ImageData:
    """Tar shards (archc/trainer/shards.py) are always streamed: feed.open_feed reads them."""
    raise DataError(f"{request.name}: shards are read as a stream; use --data-path stream or auto")


def list_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision ImageFolder's listing of folder/CLASS/*: sorted class
    names and (path, label) pairs."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(folder))
        samples = make_dataset(
            str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True
        )
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagefolder: {exc}") from None
    if not samples:
        raise DataError(
            f"imagefolder: no images in {folder} (looked for "
            f"{', '.join(IMG_EXTENSIONS)} files in CLASS folders)"
        )
    return classes, samples


def folder_splits(root: Path) -> tuple[Path, Path | None]:
    """(train folder, test folder): ROOT/train with ROOT/test or
    ROOT/val, else (ROOT, None) to split."""
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a directory")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        return root / "train", test_dir
    return root, None


def _read_folder(
    folder: Path, resize: tuple[int, int] | None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Decode every image of folder/CLASS/* into one preallocated uint8 array.

    A first pass reads only the headers (mode and size), so the pixels are held once: the peak
    is the decoded dataset, not a list of PIL images plus their converted copies.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    classes, samples = list_folder(folder)
    modes, sizes = set(), set()
    try:
        for path, _ in samples:
            with Image.open(path) as img:
                modes.add("L" if img.mode in ("1", "L", "I;16", "I") else "RGB")
                sizes.add(img.size)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"imagefolder: cannot read {path}: {exc}") from None
    if resize is None and len(sizes) > 1:
        a, b = sorted(sizes)[:2]
        raise DataError(
            f"imagefolder: images in {folder} differ in size "
            f"({a[1]}x{a[0]} and {b[1]}x{b[0]}); pass --resize H[,W]"
        )
    mode = "L" if modes == {"L"} else "RGB"
    w, h = (resize[1], resize[0]) if resize is not None else next(iter(sizes))
    images = np.empty(
        (len(samples), h, w) if mode == "L" else (len(samples), h, w, 3), dtype=np.uint8
    )
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if resize is not None and img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                images[i] = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"imagefolder: cannot read {path}: {exc}") from None
    tensor = torch.from_numpy(
        images[:, None] if mode == "L" else images.transpose(0, 3, 1, 2).copy()
    )
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return classes, tensor, labels


def _fmt(x: torch.Tensor) -> str:
    return "x".join(str(int(d)) for d in x.shape[1:])


def _checked(data: ImageData) -> ImageData:
    """Labels outside the class list mean a foreign or corrupt file: say
    so here, not as a CUDA assert."""
    for split, y in (("train", data.train_y), ("test", data.test_y)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= data.num_classes):
            raise DataError(
                f"{data.name}: {split} labels span {int(y.min())}..{int(y.max())} "
                f"but there are {data.num_classes} classes"
            )
    if len(data.train_y) == 0 or len(data.test_y) == 0:
        raise DataError(f"{data.name}: empty {'train' if len(data.train_y) == 0 else 'test'} split")
    return data
