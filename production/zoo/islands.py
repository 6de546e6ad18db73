"""A small CNN meant to be quantized with qconfig_dict exclusions: a float conv-BN-ReLU
island, a float ReLU between quantized convs, dropout, and a float linear head.
`island_qconfig_dict()` gives the matching qconfig_dict."""

from __future__ import annotations

from torch import Tensor, nn
from torch.ao.quantization import QConfig, get_default_qconfig

from ._init import scaled


class IslandNet(nn.Module):
    """stem (q) -> island conv-BN-ReLU (float) -> body conv-BN (q) -> act ReLU (float) ->
    max-pool -> pool -> dropout -> fc1 (q) -> ReLU -> fc2 (float)."""

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, hidden = (scaled(c, width) for c in (16, 32, 32, 64))
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True))
        self.island = nn.Sequential(
            nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True)
        )
        self.body = nn.Sequential(nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3))
        self.act = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.3)
        self.fc1 = nn.Linear(c3, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.body(self.island(self.stem(x))))
        x = self.dropout(self.avgpool(self.maxpool(x)).flatten(1))
        return self.fc2(self.relu(self.fc1(x)))


def island_qconfig_dict() -> dict[str, QConfig | None]:
    """fbgemm default everywhere except the float modules `island`, `act` and `fc2`."""
    return {"": get_default_qconfig("fbgemm"), "island": None, "act": None, "fc2": None}


def island_net(num_classes: int = 10, width: float = 1.0) -> IslandNet:
    """The float-island CNN scaled by `width`."""
    return IslandNet(num_classes, width)
