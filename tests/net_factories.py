"""Small networks shared by the nets and NTK tests (cheap enough for finite differences)."""
import numpy as np

import lkr
from lkr import nets

KINDS = ["fc", "deep", "cnn", "lcn"]


def geometry(boundary="periodic"):
    return lkr.PatchGeometry((12,), filter_size=3, stride=2, boundary=boundary)


def make(kind, act="erf", dtype=np.float64, seed=0):
    if kind == "fc":
        return nets.FCNet(12, 7, activation=act, lambda0=2.0, lambda1=0.5, seed=seed, dtype=dtype)
    if kind == "deep":
        return nets.DeepFCNet(12, (6, 5), activation=act, lambdas=(1.0, 2.0, 0.5), seed=seed,
                              dtype=dtype)
    cls = nets.CNNNet if kind == "cnn" else nets.LCNNet
    return cls(geometry=geometry(), width=4, activation=act, lambda0=2.0, lambda1=0.5,
               seed=seed, dtype=dtype)
