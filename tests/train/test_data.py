"""Datasets: real on-disk formats written here, parsed by the real code path; offline errors."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archc.compiler.train_config import TrainConfig
from archc.trainer import data as data_module
from archc.trainer.data import load_dataset
from archc.trainer.errors import DataError
from tests.fake_datasets import write_cifar10, write_cifar100, write_idx


def test_cifar10_parses_the_python_batches(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    data = load_dataset(TrainConfig(dataset="cifar10", data_dir=str(tmp_path), download=False))
    assert data.train_x.shape == (15, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (4, 3, 32, 32)
    assert (
        int(data.train_x[0, 0, 5, 5]) == 10
        and int(data.train_x[0, 1, 0, 0]) == 100
        and int(data.train_x[0, 2, 31, 31]) == 200
    )
    assert data.train_y.tolist()[:3] == [1, 1, 1] and data.test_y.tolist() == [0, 1, 2, 9]
    assert data.classes[0] == "airplane" and data.num_classes == 10
    assert (data.crop_padding, data.hflip) == (4, True)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    data = load_dataset(TrainConfig(dataset="cifar100", data_dir=str(tmp_path), download=False))
    assert data.train_y.tolist() == [0, 1, 99, 50, 3] and data.num_classes == 100
    assert int(data.test_x[1, 0, 0, 0]) == 8


@pytest.mark.parametrize(
    ("name", "folder", "flip"),
    [
        ("mnist", "MNIST", False),
        ("fashion_mnist", "FashionMNIST", True),
        ("kmnist", "KMNIST", False),
    ],
)
def test_mnist_family_parses_idx_files(tmp_path: Path, name: str, folder: str, flip: bool) -> None:
    images = np.arange(6 * 28 * 28, dtype=np.int64).reshape(6, 28, 28).astype(np.uint8)
    write_idx(tmp_path / folder / "raw", "train", images, np.array([0, 1, 2, 3, 4, 9]))
    write_idx(tmp_path / folder / "raw", "t10k", images[:2], np.array([7, 8]))
    data = load_dataset(TrainConfig(dataset=name, data_dir=str(tmp_path), download=False))
    assert data.train_x.shape == (6, 1, 28, 28)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(images))
    assert data.train_y.tolist() == [0, 1, 2, 3, 4, 9] and data.test_y.tolist() == [7, 8]
    assert data.num_classes == 10 and data.hflip is flip


def test_a_planted_pickle_payload_is_refused_and_not_run(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match=r"cannot read cifar10 .*unexpected object"):
        load_dataset(TrainConfig(dataset="cifar10", data_dir=str(tmp_path), download=False))
    assert not marker.exists()


def test_truncated_cifar_file_is_a_clear_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match=r"cannot read cifar10 .* delete the folder"):
        load_dataset(TrainConfig(dataset="cifar10", data_dir=str(tmp_path), download=False))


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_offline_and_absent_names_data_dir_and_offline_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DataError) as info:
        load_dataset(TrainConfig(dataset=name, data_dir=str(tmp_path / "empty")))
    message = str(info.value)
    assert "--data-dir" in message and "digits, synthetic, imagefolder:PATH" in message
    assert "downloading it failed" in message and "\n" not in message


def test_no_download_says_so(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"not in .* downloading is off \(--no-download\).*--data-dir"
    ):
        load_dataset(TrainConfig(dataset="fashion_mnist", data_dir=str(tmp_path), download=False))


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(
        DataError,
        match=(
            r"unknown dataset 'cifar11' \(did you mean 'cifar10'\?\); "
            r"choose one of cifar10, cifar100, .*imagefolder:PATH"
        ),
    ):
        load_dataset(TrainConfig(dataset="cifar11"))


def test_a_registered_dataset_loads_by_name_with_its_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a plugin module does: register a loader; names ending in ':' take an argument."""
    monkeypatch.setattr(data_module, "DATASETS", dict(data_module.DATASETS))
    seen = []

    @data_module.dataset("stripes:", offline=True)
    def stripes(request: data_module.Request) -> data_module.ImageData:
        seen.append((request.argument, request.default_shape))
        n = int(request.argument)
        x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
        y = torch.arange(n) % 2
        return data_module.ImageData("stripes", x, y, x[:2], y[:2], ("a", "b"), 1, False)

    data = load_dataset(TrainConfig(dataset="stripes:6", train_subset=4), default_shape=(1, 4, 4))
    assert (
        seen == [("6", (1, 4, 4))] and data.train_x.shape == (4, 1, 4, 4) and data.num_classes == 2
    )
    assert "stripes:PATH" in data_module.dataset_names(offline_only=True)


def test_digits_split_is_fixed_and_stratified() -> None:
    a, b = load_dataset(TrainConfig(dataset="digits")), load_dataset(TrainConfig(dataset="digits"))
    assert a.train_x.shape == (1437, 1, 8, 8) and a.test_x.shape == (360, 1, 8, 8)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)
    assert int(a.train_x.max()) == 255
    assert torch.bincount(a.test_y).min() >= 35  # every digit well represented in the test split
    assert (a.crop_padding, a.hflip) == (1, False)


def test_synthetic_is_seeded_any_shape_and_separable() -> None:
    cfg = TrainConfig(
        dataset="synthetic",
        synthetic_size=(600, 200),
        synthetic_shape=(2, 12, 20),
        synthetic_classes=6,
        seed=5,
    )
    a, b = load_dataset(cfg), load_dataset(cfg.model_copy(update={"seed": 9}))
    assert a.train_x.shape == (600, 2, 12, 20) and a.num_classes == 6
    assert torch.equal(a.train_x, b.train_x)  # the data does not depend on the training seed
    means = torch.stack([a.train_x[a.train_y == k].float().mean(0) for k in range(6)])
    distances = ((a.test_x.float()[:, None] - means[None]) ** 2).sum(dim=(2, 3, 4))
    assert (distances.argmin(1) == a.test_y).float().mean() > 0.9


def test_synthetic_defaults_to_the_models_input_shape() -> None:
    data = load_dataset(
        TrainConfig(dataset="synthetic", synthetic_size=(8, 4)), default_shape=(1, 28, 28)
    )
    assert data.shape == (1, 28, 28)


def test_subsets_take_the_first_images() -> None:
    full = load_dataset(TrainConfig(dataset="digits"))
    part = load_dataset(TrainConfig(dataset="digits", train_subset=100, test_subset=10))
    assert torch.equal(part.train_x, full.train_x[:100]) and len(part.test_y) == 10


def _png(path: Path, size: tuple[int, int], value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def test_imagefolder_with_train_and_test_folders(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("test", 1)):
        for label, value in (("cat", 10), ("dog", 200)):
            for i in range(count):
                _png(tmp_path / split / label / f"{i}.png", (6, 4), value)
    data = load_dataset(TrainConfig(dataset=f"imagefolder:{tmp_path}"))
    assert data.train_x.shape == (6, 3, 4, 6) and data.test_x.shape == (2, 3, 4, 6)
    assert data.classes == ("cat", "dog")
    assert data.test_y.tolist() == [0, 1] and int(data.test_x[1].min()) == 200


def test_imagefolder_single_folder_is_split_and_grayscale_stays_one_channel(tmp_path: Path) -> None:
    for i in range(10):
        _png(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", (5, 5), i * 20, mode="L")
    data = load_dataset(TrainConfig(dataset=f"imagefolder:{tmp_path}"))
    assert data.shape == (1, 5, 5) and len(data.train_y) == 8 and len(data.test_y) == 2


def test_imagefolder_mixed_sizes_need_resize(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "0.png", (5, 5), 0)
    _png(tmp_path / "b" / "1.png", (7, 5), 0)
    with pytest.raises(DataError, match=r"differ in size .* pass --resize"):
        load_dataset(TrainConfig(dataset=f"imagefolder:{tmp_path}"))
    data = load_dataset(TrainConfig(dataset=f"imagefolder:{tmp_path}", resize=(4, 6)))
    assert data.shape == (3, 4, 6)


def test_channel_stats_match_a_direct_computation() -> None:
    data = load_dataset(TrainConfig(dataset="synthetic", synthetic_size=(64, 8)))
    mean, std = data.channel_stats()
    x = data.train_x.double() / 255
    assert torch.allclose(mean.double(), x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(
        std.double(), x.transpose(0, 1).reshape(3, -1).std(dim=1, unbiased=False), atol=1e-5
    )


def test_a_dataset_name_cannot_be_registered_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with ops: a plugin reusing a name would silently replace a dataset."""
    monkeypatch.setattr(data_module, "DATASETS", dict(data_module.DATASETS))

    def other(request: data_module.Request) -> data_module.ImageData:
        raise AssertionError("never loaded")

    with pytest.raises(
        ValueError,
        match=r"dataset name 'digits' is already registered by archc\.trainer\.data\._digits",
    ):
        data_module.dataset("mine", "digits")(other)
    assert "mine" not in data_module.DATASETS  # refused whole: no half-registered names
    data_module.dataset("imagefolder:", offline=True)(
        data_module.DATASETS["imagefolder:"].loader
    )  # the same loader again is fine


def test_imagefolder_in_memory_decodes_jpeg_and_png_into_one_array(tmp_path: Path) -> None:
    from tests.fake_datasets import write_imagefolder

    write_imagefolder(tmp_path, classes=2, train=3, val=2, size=(6, 5))
    data = load_dataset(TrainConfig(dataset=f"imagefolder:{tmp_path}"))
    assert (
        data.train_x.shape == (6, 3, 6, 5)
        and data.test_x.shape == (4, 3, 6, 5)
        and data.train_x.is_contiguous()
    )
    assert data.classes == ("n00000000", "n00000001") and data.test_y.tolist() == [0, 0, 1, 1]
