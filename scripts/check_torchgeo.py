"""Reads a `nadir export` folder with TorchGeo: the images and masks of each split as
RasterDatasets, intersected, sampled on a grid into batches. Needs torchgeo (not part of CI:
torch is a multi-GB install). Usage: python check_torchgeo.py EXPORT_DIR"""

import glob
import sys

from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import GridGeoSampler
from torch.utils.data import DataLoader
root = sys.argv[1]
class Chips(RasterDataset):
    filename_glob = "*.tif"
    is_image = True
class Masks(RasterDataset):
    filename_glob = "*.tif"
    is_image = False
n = 0
for split in ["train", "val", "test"]:
    files = glob.glob(f"{root}/images/{split}/*.tif")
    if not files:
        continue
    imgs = Chips(paths=f"{root}/images/{split}")
    masks = Masks(paths=f"{root}/masks/{split}")
    ds = imgs & masks
    sampler = GridGeoSampler(ds, size=64, stride=64)
    dl = DataLoader(ds, sampler=sampler, batch_size=4, collate_fn=stack_samples)
    b = next(iter(dl))
    print(split, len(files), "chips; batch image", tuple(b["image"].shape), "mask", tuple(b["mask"].shape), "mask max", int(b["mask"].max()))
    n += len(files)
print("TorchGeo read", n, "chips")
