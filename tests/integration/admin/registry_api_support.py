"""The admin API client the admin integration tests share (no tests here)."""

from __future__ import annotations

import json
from typing import Any

from harness import http


class Api:
    def __init__(self, admin: str, token: str | None = None) -> None:
        self.base = f"http://{admin}"
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> http.Response:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None and not isinstance(body, str):
            body, headers["content-type"] = json.dumps(body), "application/json"
        elif body is not None:
            headers["content-type"] = "application/yaml"
        return http.request(method, self.base + path, headers=headers, body=body)
