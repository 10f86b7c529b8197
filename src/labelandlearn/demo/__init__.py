"""The demo project: Ethereum tweets downloaded once and verified, or a shipped sample."""

from labelandlearn.demo.data import (
    DEMO_PROJECT_NAME,
    DEMO_SHA256,
    DEMO_SIZE,
    DEMO_URL,
    SAMPLE_PATH,
    DemoSource,
    fetch_demo_data,
    load_demo_project,
)

__all__ = [
    "DEMO_PROJECT_NAME",
    "DEMO_SHA256",
    "DEMO_SIZE",
    "DEMO_URL",
    "SAMPLE_PATH",
    "DemoSource",
    "fetch_demo_data",
    "load_demo_project",
]
