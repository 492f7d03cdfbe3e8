"""Datasets as cached uint8 tensors, augmented on tensors.

Supported datasets (``load(name, split)``):

==================  ===========  =====================================================================
name                splits       sources, in the order they are tried
==================  ===========  =====================================================================
``cifar10``         train, test  ``data/cifar-10-batches-py`` (canonical, lossless);
                                 mirror ``cifar10-jpeg.zip`` (same images, JPEG q~75: lossy);
                                 canonical download through torchvision
``cifar100``        train, test  ``data/cifar-100-python``; canonical download through torchvision
``tinyimagenet``    train, val   ``data/tiny-imagenet-200.zip`` or ``data/tiny-imagenet-200/``
                                 (official archive layout); mirror ``tiny-imagenet-200-subset.zip``
                                 (100 training images per class, full val); official download
``cifar10-lossless`` test        canonical CIFAR-10 test images 0..999: the first 1,000 images of
                                 ``data/cifar-10-batches-py/test_batch``; mirror
                                 ``cifar10-test-lossless-0-999.npz``
==================  ===========  =====================================================================

The mirror is an optional directory laid out like ``shared/data`` (``FLAKE_DATA_MIRROR`` or the
``mirror`` argument); every mirror file is checked against its SHA-256 before it is decoded. Decoded
images are cached once as a uint8 tensor ``(N, 3, H, W)`` under ``data/cache/`` (``FLAKE_DATA_DIR``
moves ``data/``), so that training on a few CPU cores is not bound by JPEG decoding.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .progress import progress

MIRROR_ENV = "FLAKE_DATA_MIRROR"
DATA_DIR_ENV = "FLAKE_DATA_DIR"

#: SHA-256 of the files of the offline mirror (``shared/data/SHA256SUMS``).
MIRROR_SHA256 = {
    "cifar10-jpeg.zip": "9fb9605a3c2fd92297c1804557d6b019dc875a34b13c3360f55d1fe355b32ce7",
    "tiny-imagenet-200-subset.zip": "8bba208040dd5587e02a8b7fda2f5060e3e2af4dd5defac40c24daf741069ee6",
    "cifar10-test-lossless-0-999.npz": "467ff8c50b61ad138681b951c9d931d7614d20ebf6cfc3f88a7164fc9e44b476",
}
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class DatasetError(RuntimeError):
    """A dataset cannot be found or read; the message says how to get it."""


class MissingDatasetError(DatasetError):
    """A dataset is in none of the places looked at (``data/``, the mirror, the download)."""


class ChecksumError(DatasetError):
    """A file's checksum differs from the expected one (corrupt or wrong version)."""


@dataclass
class ImageSplit:
    """One split of a dataset: ``images`` uint8 ``(N, 3, H, W)``, ``labels`` int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    dataset: str
    split: str
    source: str  #: where the pixels came from, e.g. ``mirror:cifar10-jpeg.zip``
    lossy: bool  #: True when the images were re-encoded lossily (the JPEG mirror)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        dataset = spec(self.dataset)
        return dataset.mean, dataset.std

    def subset(self, indices: torch.Tensor) -> ImageSplit:
        indices = torch.as_tensor(indices, dtype=torch.long)
        extra = {k: v[indices] for k, v in self.extra.items() if torch.is_tensor(v)}
        return ImageSplit(self.images[indices], self.labels[indices], self.classes, self.dataset,
                          self.split, self.source, self.lossy, extra)

    def describe(self) -> dict:
        """A JSON-ready description for provenance and metrics files."""
        return {"dataset": self.dataset, "split": self.split, "n": len(self), "source": self.source,
                "lossy": self.lossy, "shape": list(self.images.shape[1:])}


# ----------------------------------------------------------------------------- locations

def default_data_dir() -> Path:
    """``$FLAKE_DATA_DIR`` or ``<repository>/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


def resolve_mirror(mirror: str | os.PathLike | None = None) -> Path | None:
    """The mirror directory: ``mirror`` if given, else ``$FLAKE_DATA_MIRROR``, else None.

    Raises DatasetError when a mirror is named but is not a directory.
    """
    value = str(mirror) if mirror not in (None, "") else os.environ.get(MIRROR_ENV, "")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DatasetError(f"data mirror {str(path)!r} does not exist or is not a directory "
                           f"(give --mirror DIR / {MIRROR_ENV} a folder laid out like shared/data)")
    return path.resolve()


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_mirror_file(path: Path) -> str:
    """Check a mirror file against :data:`MIRROR_SHA256`; return its hash or raise ChecksumError."""
    expected = MIRROR_SHA256[path.name]
    actual = sha256(path)
    if actual != expected:
        raise ChecksumError(f"checksum mismatch for {path}: expected sha256 {expected[:16]}..., got "
                            f"{actual[:16]}...; the file is corrupt or not the mirrored version: "
                            f"copy it again (check with `sha256sum -c SHA256SUMS` in the mirror)")
    return actual


def _mirror_file(mirror: Path | None, name: str) -> Path | None:
    if mirror is None or not (mirror / name).is_file():
        return None
    return mirror / name


# ----------------------------------------------------------------------------- decoding

def _decode(data: bytes, size: int | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None and image.size != (size, size):
        raise DatasetError(f"unexpected image size {image.size}, expected {size}x{size}")
    return np.asarray(image, dtype=np.uint8)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _read_cifar_jpeg_zip(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``cifar10-jpeg/{split}/<class>/NNNN.jpg``, class-major, canonical order within a class."""
    with zipfile.ZipFile(path) as archive:
        members = []
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[1] == split and parts[3].endswith(".jpg"):
                members.append((CIFAR10_CLASSES.index(parts[2]), int(parts[3][:-4]), name))
        if not members:
            raise DatasetError(f"{path} holds no cifar10-jpeg/{split}/ images")
        members.sort()
        images = [_decode(archive.read(name), 32)
                  for _, _, name in progress(members, desc=f"decode cifar10 {split} (JPEG mirror)",
                                             mininterval=2)]
    return _stack(images), torch.tensor([m[0] for m in members], dtype=torch.long)


def _read_cifar_pickles(folder: Path, files: list[str], label_key: bytes):
    images, labels = [], []
    for name in files:
        with open(folder / name, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def _cifar_canonical(name: str, split: str, root: Path, download: bool):
    """Canonical CIFAR pickles under ``root`` (torchvision's layout), downloading them if allowed."""
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    if not folder.is_dir() and download:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            cls(str(root), train=(split == "train"), download=True)
        except Exception as error:  # noqa: BLE001 - any network or archive failure
            raise MissingDatasetError(f"{name}: downloading the canonical archive into {root} failed "
                               f"({type(error).__name__}: {error})") from error
    if not folder.is_dir():
        return None
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        images, labels = _read_cifar_pickles(folder, files, b"labels")
        classes = list(CIFAR10_CLASSES)
    else:
        images, labels = _read_cifar_pickles(folder, [split], b"fine_labels")
        with open(folder / "meta", "rb") as handle:
            classes = [c.decode() for c in pickle.load(handle, encoding="bytes")[b"fine_label_names"]]
    return images, labels, classes


def _read_tinyimagenet(source: Path, split: str):
    """Official Tiny-ImageNet-200 layout, from a zip archive or an extracted folder."""
    if source.is_dir():
        read = lambda name: (source.parent / name).read_bytes()  # noqa: E731
        names = [str(p.relative_to(source.parent)) for p in source.rglob("*") if p.is_file()]
        archive = None
    else:
        archive = zipfile.ZipFile(source)
        read, names = archive.read, archive.namelist()
    try:
        wnids = sorted(read("tiny-imagenet-200/wnids.txt").decode().split())
        words = dict(line.split("\t", 1) for line in read("tiny-imagenet-200/words.txt")
                     .decode().splitlines() if "\t" in line)
        index = {w: i for i, w in enumerate(wnids)}
        if split == "train":
            members = sorted((index[n.split("/")[2]], n) for n in names
                             if n.startswith("tiny-imagenet-200/train/") and n.endswith(".JPEG"))
        else:
            annotations = read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines()
            members = sorted((index[line.split("\t")[1]], f"tiny-imagenet-200/val/images/{line.split()[0]}")
                             for line in annotations if line.strip())
        images = [_decode(read(n), 64) for _, n in progress(members, desc=f"decode tinyimagenet {split}",
                                                            mininterval=2)]
    except KeyError as error:
        raise DatasetError(f"{source} does not have the official tiny-imagenet-200 layout "
                           f"(missing {error})") from error
    finally:
        if archive is not None:
            archive.close()
    classes = [words.get(w, w).split(",")[0].strip() for w in wnids]
    return _stack(images), torch.tensor([m[0] for m in members], dtype=torch.long), classes


# ----------------------------------------------------------------------------- sources

def _missing(name: str, mirror: Path | None, how: str) -> MissingDatasetError:
    where = f"the mirror {mirror}" if mirror else "no mirror (give --mirror DIR or set FLAKE_DATA_MIRROR)"
    return MissingDatasetError(f"dataset {name!r} not found in {default_data_dir()} nor in {where}; {how}")


def _load_cifar10(split: str, mirror: Path | None, root: Path, download: bool):
    name = "cifar10"
    if (root / "cifar-10-batches-py").is_dir():
        return (*_cifar_canonical(name, split, root, False), "canonical:cifar-10-batches-py",
                False, {}, "canonical")
    zipped = _mirror_file(mirror, "cifar10-jpeg.zip")
    if zipped is not None:
        digest = verify_mirror_file(zipped)
        images, labels = _read_cifar_jpeg_zip(zipped, split)
        return (images, labels, list(CIFAR10_CLASSES), "mirror:cifar10-jpeg.zip (JPEG q~75)",
                True, {}, "mirror-" + digest[:12])
    found = _cifar_canonical(name, split, root, download) if download else None
    if found is None:
        raise _missing(name, mirror, "torchvision downloads it when the network allows "
                       "(download=True), or put cifar10-jpeg.zip in the mirror")
    return (*found, "canonical:cifar-10-batches-py", False, {}, "canonical")


def _load_cifar100(split: str, mirror: Path | None, root: Path, download: bool):
    found = _cifar_canonical("cifar100", split, root, download)
    if found is None:
        raise _missing("cifar100", mirror, "the offline mirror has no CIFAR-100: run once with network "
                       "access (torchvision downloads cifar-100-python.tar.gz into data/)")
    return (*found, "canonical:cifar-100-python", False, {}, "canonical")


def _load_tinyimagenet(split: str, mirror: Path | None, root: Path, download: bool):
    name = "tinyimagenet"
    for candidate in (root / "tiny-imagenet-200.zip", root / "tiny-imagenet-200"):
        if candidate.exists():
            return (*_read_tinyimagenet(candidate, split), f"canonical:{candidate.name}", False,
                    {}, "canonical")
    zipped = _mirror_file(mirror, "tiny-imagenet-200-subset.zip")
    if zipped is not None:
        digest = verify_mirror_file(zipped)
        return (*_read_tinyimagenet(zipped, split),
                "mirror:tiny-imagenet-200-subset.zip (100 train images per class)", False, {},
                "mirror-" + digest[:12])
    if download:
        from torchvision.datasets.utils import download_url

        try:
            download_url(TINYIMAGENET_URL, str(root), md5=TINYIMAGENET_MD5)
        except Exception as error:  # noqa: BLE001
            raise _missing(name, mirror, f"downloading {TINYIMAGENET_URL} failed "
                           f"({type(error).__name__}: {error})") from error
        return _load_tinyimagenet(split, mirror, root, False)
    raise _missing(name, mirror, f"download {TINYIMAGENET_URL} into {root}, or put "
                   "tiny-imagenet-200-subset.zip in the mirror")


def _load_cifar10_lossless(split: str, mirror: Path | None, root: Path, download: bool):
    name = "cifar10-lossless"
    if split != "test":
        raise ValueError("cifar10-lossless has only a 'test' split (canonical test images 0..999)")
    npz = _mirror_file(mirror, "cifar10-test-lossless-0-999.npz")
    if (root / "cifar-10-batches-py").is_dir() or npz is None:
        found = _cifar_canonical("cifar10", "test", root, download)
        if found is None:
            raise _missing(name, mirror, "put cifar10-test-lossless-0-999.npz in the mirror or "
                           "download canonical CIFAR-10")
        images, labels = found[0][:1000], found[1][:1000]
        source, tag = "canonical:cifar-10-batches-py/test_batch[0:1000]", "canonical"
    else:
        digest = verify_mirror_file(npz)
        with np.load(npz) as arrays:
            images = torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2).contiguous()
            labels = torch.from_numpy(arrays["labels"]).long()
        source, tag = "mirror:cifar10-test-lossless-0-999.npz", "mirror-" + digest[:12]
    return (images, labels, list(CIFAR10_CLASSES), source, False,
            {"jpeg_test_index": jpeg_test_index(labels)}, tag)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset, everything the rest of Flake reads about it: ``classes``, ``image_shape``
    ``(C, H, W)``, the per-channel ``mean`` and ``std`` of its training images (in [0, 1] units), its
    ``splits``, the ``canonical`` paths under ``data/`` tried first, the offline ``mirror_file`` (or
    None) and the ``loader(split, mirror, root, download)`` that reads it, returning ``(images, labels,
    classes, source, lossy, extra, cache_tag)``. A new dataset is one spec in :data:`DATASET_SPECS`."""

    name: str
    classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    splits: tuple[str, ...]
    canonical: tuple[str, ...]
    mirror_file: str | None
    loader: Callable = field(repr=False, compare=False)


_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
#: Every dataset by name: the one table a new dataset is added to.
DATASET_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("cifar10", 10, (3, 32, 32), *_CIFAR10_STATS, ("train", "test"), ("cifar-10-batches-py",),
                "cifar10-jpeg.zip", _load_cifar10),
    DatasetSpec("cifar100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                ("train", "test"), ("cifar-100-python",), None, _load_cifar100),
    DatasetSpec("tinyimagenet", 200, (3, 64, 64), (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821),
                ("train", "val"), ("tiny-imagenet-200.zip", "tiny-imagenet-200"), "tiny-imagenet-200-subset.zip",
                _load_tinyimagenet),
    DatasetSpec("cifar10-lossless", 10, (3, 32, 32), *_CIFAR10_STATS, ("test",), ("cifar-10-batches-py",),
                "cifar10-test-lossless-0-999.npz", _load_cifar10_lossless),
)}
DATASETS = tuple(DATASET_SPECS)
#: Per-channel mean and standard deviation of the training images, in [0, 1] units (from the specs).
NORMALIZATION = {name: (s.mean, s.std) for name, s in DATASET_SPECS.items()}


def spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``."""
    if name not in DATASET_SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_SPECS)}")
    return DATASET_SPECS[name]


def _load_uncached(name: str, split: str, mirror: Path | None, root: Path, download: bool):
    """Return (images, labels, classes, source, lossy, extra, cache_tag) from the dataset's loader."""
    return spec(name).loader(split, mirror, root, download)


def jpeg_test_index(labels: torch.Tensor, per_class: int = 1000) -> torch.Tensor:
    """Position of canonical test images ``0..len(labels)-1`` in the JPEG mirror's test split.

    The mirror's test split is class-major with canonical order inside a class, so canonical image
    ``i`` of class ``c`` sits at ``c * per_class + #{j < i : label_j = c}``.
    """
    rank = torch.zeros_like(labels)
    seen: dict[int, int] = {}
    for i, c in enumerate(labels.tolist()):
        rank[i] = seen.get(c, 0)
        seen[c] = rank[i].item() + 1
    return labels * per_class + rank


def load(name: str, split: str = "train", *, mirror: str | os.PathLike | None = None,
         data_dir: str | os.PathLike | None = None, n: int | None = None, seed: int = 0,
         download: bool = True) -> ImageSplit:
    """Load one split of a dataset as uint8 tensors, decoding it once into ``data/cache/``.

    ``n`` draws a seeded class-balanced subset (see :func:`class_balanced_subset`).
    ``split`` is ``train`` or ``test`` (``val`` is accepted for Tiny-ImageNet, and means ``test``).
    """
    dataset = spec(name)
    split = {"val": "test"}.get(split, split)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    mirror_path = resolve_mirror(mirror)
    cached = _find_cache(root, name, split, mirror_path)
    if cached is None:
        own = "val" if split == "test" and "test" not in dataset.splits else split  # the dataset's own word
        loaded = _load_uncached(name, own, mirror_path, root, download)
        images, labels, classes, source, lossy, extra, tag = loaded
        cached = {"images": images, "labels": labels, "classes": classes, "source": source,
                  "lossy": lossy, "extra": extra}
        _save_cache(root / "cache" / f"{name}-{split}-{tag}.pt", cached)
    data = ImageSplit(cached["images"], cached["labels"], cached["classes"], name, split,
                      cached["source"], cached["lossy"], cached["extra"])
    if n is not None and n < len(data):
        data = data.subset(class_balanced_subset(data.labels, n, seed))
    return data


def _source_tag(root: Path, name: str, mirror: Path | None) -> str | None:
    """Cache tag of the source :func:`_load_uncached` will pick (None: it would download)."""
    dataset = spec(name)
    if any((root / p).exists() for p in dataset.canonical):
        return "canonical"
    if dataset.mirror_file and _mirror_file(mirror, dataset.mirror_file) is not None:
        return "mirror-" + MIRROR_SHA256[dataset.mirror_file][:12]
    return None


def _find_cache(root: Path, name: str, split: str, mirror: Path | None) -> dict | None:
    tag = _source_tag(root, name, mirror)
    path = root / "cache" / f"{name}-{split}-{tag}.pt"
    return torch.load(path, weights_only=False) if tag and path.is_file() else None


def _save_cache(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- subsets and batches

def class_balanced_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Seeded subset of ``n`` indices with ``n // C`` per class (the remainder to random classes)."""
    classes = torch.unique(labels)
    generator = torch.Generator().manual_seed(seed)
    per_class = torch.full((len(classes),), n // len(classes), dtype=torch.long)
    per_class[torch.randperm(len(classes), generator=generator)[: n % len(classes)]] += 1
    chosen = []
    for c, count in zip(classes.tolist(), per_class.tolist()):
        members = torch.nonzero(labels == c).flatten()
        if count > len(members):
            raise ValueError(f"class {c} has {len(members)} images, fewer than the {count} asked for")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.sort(torch.cat(chosen)).values


def train_validation_split(split: ImageSplit, n_validation: int,
                           seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """Carve a validation split out of a training split: ``n_validation`` class-balanced images drawn
    with ``seed`` (:func:`class_balanced_subset`) become ``split="validation"``, the others stay for
    training. Every model of a profile trains on the same remainder and is read on the same images."""
    if not 0 < n_validation < len(split):
        raise ValueError(f"n_validation={n_validation} must be between 1 and {len(split) - 1}")
    validation = class_balanced_subset(split.labels, n_validation, seed)
    keep = torch.ones(len(split), dtype=torch.bool)
    keep[validation] = False
    train_part = split.subset(torch.nonzero(keep).flatten())
    held_out = split.subset(validation)
    held_out.split = "validation"
    return train_part, held_out


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` → float ``(x / 255 − mean) / std``."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
            flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image, on a uint8 batch."""
    b, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    out = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


class TensorLoader:
    """Batches ``(x, y)`` of normalised float images from an :class:`ImageSplit`.

    The order and augmentation of epoch ``e`` depend only on ``(seed, e)``, so an interrupted run
    that resumes at epoch ``e`` sees exactly the batches an uninterrupted run would.
    ``with_index=True`` yields ``(x, y, index)``, the positions of the batch in ``data``.
    ``channels_last`` returns images in that memory format (faster convolutions on CPU).
    """

    def __init__(self, data: ImageSplit, batch_size: int = 128, *, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, drop_last: bool = False,
                 with_index: bool = False, channels_last: bool = False):
        self.with_index, self.channels_last = with_index, channels_last
        self.data, self.batch_size = data, batch_size
        self.shuffle, self.augment, self.seed, self.drop_last = shuffle, augment, seed, drop_last
        self.epoch = 0
        self.mean, self.std = data.normalization

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start: start + self.batch_size]
            images = self.data.images[index]
            if self.augment:
                images = augment(images, generator)
            x = normalize(images, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield (x, self.data.labels[index], index) if self.with_index else (x, self.data.labels[index])
