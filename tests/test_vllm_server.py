"""`hut-peft serve`: vLLM's OpenAI server with HUT adapters, driven by the `openai` client over localhost.

One server for the module (started by the real command, about 30-60 s on 2 cores): outputs equal the
transformers reference, the API key is enforced, adapters load and unload at run time, and a bounded soak
(16 concurrent clients, mixed adapters) answers every request while bad requests get clear errors.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from vllm_fixtures import PROMPTS, greedy_reference, make_served_models

KEY = "test-key-hut"
NEW_TOKENS = 8
START_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("vllm-server")
    folders = make_served_models(root)
    port = free_port()
    log = open(root / "server.log", "w")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [sys.executable, "-m", "hut_peft.cli", "serve", str(folders["base"]), "--adapters",
               str(root / "adapters"), "--max-loras", "6", "--allow-runtime-adapters", "--",
               "--port", str(port), "--api-key", KEY, "--served-model-name", "base", "--dtype", "float32",
               "--max-model-len", "128", "--max-num-seqs", "32", "--seed", "0"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited ({process.returncode}):\n{(root / 'server.log').read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"the server did not start in {START_TIMEOUT_S} s:\n{(root / 'server.log').read_text()[-4000:]}")
        time.sleep(1)
    yield {"url": url, "folders": folders, "root": root,
           "client": openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)}
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def complete(client: openai.OpenAI, model: str, prompt: int) -> list[int]:
    response = client.completions.create(model=model, prompt=PROMPTS[prompt], max_tokens=NEW_TOKENS, temperature=0,
                                         extra_body={"return_token_ids": True, "ignore_eos": True})
    return list(response.choices[0].token_ids)


def expected(server: dict, adapter: str | None, prompt: int) -> list[int]:
    folder = None if adapter in (None, "base") else server["folders"]["adapters"][adapter]
    return greedy_reference(server["folders"]["base"], folder, PROMPTS[prompt], NEW_TOKENS)[0]


def test_models_lists_every_adapter_folder(server: dict) -> None:
    names = {m.id for m in server["client"].models.list()}
    assert names == {"base", "attn", "all", "rows", "lora"}


@pytest.mark.parametrize("adapter", ["attn", "all", "rows", "lora", "base"])
def test_completions_equal_transformers(server: dict, adapter: str) -> None:
    for prompt in range(len(PROMPTS)):
        assert complete(server["client"], adapter, prompt) == expected(server, adapter, prompt)


def test_a_request_without_the_key_is_refused(server: dict) -> None:
    anonymous = openai.OpenAI(base_url=f"{server['url']}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        complete(anonymous, "attn", 0)
    response = httpx.post(f"{server['url']}/v1/completions", json={"model": "attn", "prompt": [1, 2], "max_tokens": 2})
    assert response.status_code == 401


def test_adapters_load_and_unload_at_run_time(server: dict) -> None:
    late = server["root"] / "late"
    shutil.copytree(server["folders"]["adapters"]["attn"], late)
    headers = {"Authorization": f"Bearer {KEY}"}
    loaded = httpx.post(f"{server['url']}/v1/load_lora_adapter", json={"lora_name": "late", "lora_path": str(late)},
                        headers=headers, timeout=60)
    assert loaded.status_code == 200, loaded.text
    assert complete(server["client"], "late", 1) == expected(server, "attn", 1)
    unloaded = httpx.post(f"{server['url']}/v1/unload_lora_adapter", json={"lora_name": "late"}, headers=headers,
                          timeout=60)
    assert unloaded.status_code == 200, unloaded.text
    with pytest.raises(openai.NotFoundError):
        complete(server["client"], "late", 1)


@pytest.mark.parametrize("case, message", [
    ("wrong_shapes", "q_proj.hut_A has shape (64, 4), expected (128, 4) for model.layers.0.self_attn.q_proj"),
    ("missing_tensor", "model.layers.0.self_attn.q_proj.hut_gamma is missing"),
    ("not_a_layer", "model.layers.0.self_attn.rotary is not a layer this model serves with adapters"),
    ("truncated", "adapter_model.safetensors is truncated"),
    ("broken_config", "adapter_config.json is not valid JSON"),
])
def test_a_bad_adapter_at_run_time_is_the_clients_error(server: dict, case: str, message: str) -> None:
    """400 with our message, which names the folder; the server goes on serving."""
    folder = server["folders"]["bad"][case]
    response = httpx.post(f"{server['url']}/v1/load_lora_adapter", json={"lora_name": case, "lora_path": str(folder)},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]["message"]
    assert message in error and f"adapter {folder.name}:" in error and "Worker failed" not in error, error
    assert complete(server["client"], "attn", 0) == expected(server, "attn", 0)


def test_an_unknown_adapter_is_answered_with_the_served_names(server: dict) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        complete(server["client"], "nobody", 0)
    assert "Served: base (the base model); adapters: all, attn, lora, rows" in str(err.value)


def test_soak_mixed_clients_with_bad_requests_in_between(server: dict) -> None:
    """16 concurrent clients × 6 requests over 5 models; meanwhile three kinds of bad request."""
    names = ["base", "attn", "all", "rows", "lora"]
    jobs = [(names[(c + k) % len(names)], (c * 3 + k) % len(PROMPTS)) for c in range(16) for k in range(6)]
    want = {job: expected(server, *job) for job in set(jobs)}
    headers = {"Authorization": f"Bearer {KEY}"}

    def client_run(c: int) -> list[bool]:
        client = openai.OpenAI(base_url=f"{server['url']}/v1", api_key=KEY, max_retries=0, timeout=300)
        return [complete(client, *job) == want[job] for job in jobs[c * 6:(c + 1) * 6]]

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client_run, c) for c in range(16)]
        with pytest.raises(openai.NotFoundError, match="nobody"):
            complete(server["client"], "nobody", 0)
        malformed = httpx.post(f"{server['url']}/v1/completions", content=b'{"model": "attn", "prompt": [1, 2',
                               headers={**headers, "Content-Type": "application/json"}, timeout=60)
        assert malformed.status_code == 400, malformed.text
        broken = httpx.post(f"{server['url']}/v1/load_lora_adapter", headers=headers, timeout=60,
                            json={"lora_name": "broken", "lora_path": str(server["folders"]["bad"]["wrong_shapes"])})
        assert broken.status_code == 400
        assert "hut_A has shape (64, 4), expected (128, 4)" in broken.text
        results = [f.result() for f in futures]
    assert sum(len(r) for r in results) == len(jobs)
    assert all(all(r) for r in results)
    assert "broken" not in {m.id for m in server["client"].models.list()}
