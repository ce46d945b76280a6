"""Fault injection only: an engine that hangs or dies on chosen texts, for the isolation tests."""

import os
import time

import numpy as np


class FaultyEngine:
    def check(self) -> None:
        pass

    def load(self) -> None:
        pass

    def synthesize(self, text: str, **kwargs):
        if text == "hang":
            time.sleep(3600)
        if text == "die":
            os._exit(3)
        return np.full(1600, 0.1, np.float32), 16000
