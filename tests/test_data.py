import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from flake_lib import data


def test_class_balanced_subset_is_balanced_and_seeded():
    labels = torch.arange(10).repeat_interleave(50)
    a = data.class_balanced_subset(labels, 43, seed=3)
    assert len(a) == 43 and len(set(a.tolist())) == 43
    counts = torch.bincount(labels[a], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(a, data.class_balanced_subset(labels, 43, seed=3))
    assert not torch.equal(a, data.class_balanced_subset(labels, 43, seed=4))
    with pytest.raises(ValueError, match="fewer"):
        data.class_balanced_subset(labels, 600, seed=0)


def test_augment_crops_and_flips_real_pixels():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = data.augment(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for original, crop in zip(images, out):  # every output is a shifted (and maybe mirrored) input
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        candidates = [padded[:, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(crop, c) or torch.equal(crop, c.flip(-1)) for c in candidates)
    no_shift = data.augment(images, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert torch.equal(no_shift, images)


def _split(n=40, classes=4):
    return data.ImageSplit(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8),
                           torch.arange(n) % classes, [str(c) for c in range(classes)],
                           "cifar10", "train", "test", False)


def test_tensor_loader_epochs_are_reproducible():
    loader = data.TensorLoader(_split(), batch_size=16, shuffle=True, augment=True, seed=7)
    loader.set_epoch(3)
    first = [(x.clone(), y.clone()) for x, y in loader]
    other = data.TensorLoader(_split(), batch_size=16, shuffle=True, augment=True, seed=7)
    other.data = loader.data
    other.set_epoch(3)
    again = list(other)
    assert len(first) == len(loader) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    loader.set_epoch(4)
    assert not torch.equal(next(iter(loader))[1], first[0][1])
    x, _ = first[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 8, 8)


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.load("mnist")
    with pytest.raises(ValueError, match="unknown split"):
        data.load("cifar10", "validation")


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    with pytest.raises(data.MissingDatasetError, match="mirror"):
        data.load("cifar10", "test", data_dir=tmp_path, download=False)
    with pytest.raises(data.MissingDatasetError, match="no CIFAR-100"):
        data.load("cifar100", "test", data_dir=tmp_path, download=False)


def test_missing_mirror_directory(tmp_path):
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load("cifar10", mirror=tmp_path / "nowhere", data_dir=tmp_path)


def test_corrupt_mirror_file_fails_its_checksum(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "cifar10-jpeg.zip").write_bytes(b"not the mirrored archive")
    with pytest.raises(data.ChecksumError, match="checksum mismatch for .*cifar10-jpeg.zip"):
        data.load("cifar10", "test", mirror=mirror, data_dir=tmp_path / "data", download=False)
    assert not issubclass(data.ChecksumError, data.MissingDatasetError)  # never a reason to fall back


def _write_cifar_pickle(path, images, labels, key):
    with open(path, "wb") as handle:
        pickle.dump({b"data": images.reshape(len(images), -1), key: labels}, handle)


def test_canonical_cifar_pickles_are_read_and_cached(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8) for _ in range(6)]
    for i in range(5):
        _write_cifar_pickle(root / f"data_batch_{i + 1}", batches[i], [i] * 6, b"labels")
    _write_cifar_pickle(root / "test_batch", batches[5], list(range(6)), b"labels")
    train = data.load("cifar10", "train", data_dir=tmp_path, download=False)
    assert train.images.shape == (30, 3, 32, 32) and not train.lossy
    assert torch.equal(train.images[:6], torch.from_numpy(batches[0]))
    assert train.labels.tolist() == sum(([i] * 6 for i in range(5)), [])
    assert (tmp_path / "cache" / "cifar10-train-canonical.pt").is_file()
    lossless = data.load("cifar10-lossless", "test", data_dir=tmp_path, download=False)
    assert torch.equal(lossless.images, torch.from_numpy(batches[5]))


def test_canonical_cifar100_reads_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    images = np.zeros((4, 3, 32, 32), dtype=np.uint8)
    _write_cifar_pickle(root / "test", images, [5, 99, 0, 1], b"fine_labels")
    with open(root / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, handle)
    split = data.load("cifar100", "test", data_dir=tmp_path, download=False)
    assert split.labels.tolist() == [5, 99, 0, 1] and split.num_classes == 100


def _jpeg(color):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_tinyimagenet_official_layout(tmp_path):
    wnids = ["n02", "n01"]
    with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip", "w") as archive:
        archive.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids))
        archive.writestr("tiny-imagenet-200/words.txt", "n01\tgoldfish, Carassius\nn02\tshark\n")
        for w, color in zip(wnids, [(255, 0, 0), (0, 0, 255)]):
            for i in range(3):
                archive.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG", _jpeg(color))
        archive.writestr("tiny-imagenet-200/val/images/val_0.JPEG", _jpeg((0, 0, 255)))
        archive.writestr("tiny-imagenet-200/val/val_annotations.txt", "val_0.JPEG\tn01\t0\t0\t1\t1\n")
    train = data.load("tinyimagenet", "train", data_dir=tmp_path, download=False)
    assert train.images.shape == (6, 3, 64, 64)
    assert train.classes == ["goldfish", "shark"]  # sorted wnids, first synonym
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.images[0, 2].float().mean() > 200  # n01 images are blue
    val = data.load("tinyimagenet", "val", data_dir=tmp_path, download=False)
    assert val.labels.tolist() == [0] and val.split == "test"


def test_jpeg_test_index_by_hand():
    labels = torch.tensor([3, 1, 3, 0, 1])
    assert data.jpeg_test_index(labels, per_class=10).tolist() == [30, 10, 31, 0, 11]


def test_mirror_cifar10_and_lossless_split_agree(mirror):
    test = data.load("cifar10", "test", mirror=mirror)
    assert test.images.shape == (10000, 3, 32, 32) and test.lossy
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    lossless = data.load("cifar10-lossless", "test", mirror=mirror)
    assert len(lossless) == 1000 and not lossless.lossy
    index = lossless.extra["jpeg_test_index"]
    assert torch.equal(test.labels[index], lossless.labels)
    error = (test.images[index].float() - lossless.images.float()).abs().mean() / 255
    assert error < 0.05  # same pictures, JPEG noise only (~6/255)
    small = data.load("cifar10", "test", mirror=mirror, n=100, seed=1)
    assert torch.bincount(small.labels).tolist() == [10] * 10


def test_every_dataset_is_one_spec_and_a_new_one_is_one_entry(tmp_path, monkeypatch):
    for name, dataset in data.DATASET_SPECS.items():
        assert dataset.name == name and len(dataset.mean) == len(dataset.std) == dataset.image_shape[0]
        assert dataset.mirror_file is None or dataset.mirror_file in data.MIRROR_SHA256
    with pytest.raises(ValueError, match="unknown dataset"):
        data.spec("mnist")

    def toy_loader(split, mirror, root, download):
        images = torch.full((6, 1, 4, 4), 7 if split == "train" else 9, dtype=torch.uint8)
        return images, torch.arange(6) % 3, ["a", "b", "c"], "generated", False, {}, "toy"

    toy = data.DatasetSpec("toy", 3, (1, 4, 4), (0.5,), (0.25,), ("train", "test"), (), None, toy_loader)
    monkeypatch.setitem(data.DATASET_SPECS, "toy", toy)
    split = data.load("toy", "test", data_dir=tmp_path)
    assert split.num_classes == 3 and split.normalization == ((0.5,), (0.25,)) and int(split.images[0, 0, 0, 0]) == 9
