"""Drive the simulator with the official openai Python SDK.

Usage: drive_simulator.py BASE_URL API_KEY
Exits 0 and prints "OK" when every check passes; any failure raises.
"""

import json
import math
import sys
import time
from typing import Literal, Optional

try:
    import openai
    from openai import OpenAI
    from pydantic import BaseModel
except ImportError as err:  # the Rust test checks this first; keep the hint here too
    sys.exit(f"cannot import openai ({err}): run scripts/test-deps")

ENDPOINT = "/v1/chat/completions"
POLL_DEADLINE_SECS = 60


def jsonl(prefix, n):
    lines = []
    for i in range(n):
        lines.append(json.dumps({
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": ENDPOINT,
            "body": {"model": "sim-model", "messages": [{"role": "user", "content": f"question {i}"}]},
        }))
    return ("\n".join(lines) + "\n").encode()


def wait_for(client, batch_id, statuses):
    deadline = time.monotonic() + POLL_DEADLINE_SECS
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} stuck in {batch.status}"
        time.sleep(0.05)


def new_batch(client, prefix, n, **kwargs):
    file = client.files.create(file=(f"{prefix}.jsonl", jsonl(prefix, n)), purpose="batch")
    return client.batches.create(
        input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h", **kwargs
    )


def check_full_cycle(client):
    file = client.files.create(file=("input.jsonl", jsonl("cycle", 20)), purpose="batch")
    assert file.id and file.purpose == "batch" and file.bytes > 0, file
    assert client.files.retrieve(file.id).id == file.id
    assert any(f.id == file.id for f in client.files.list(purpose="batch"))

    batch = client.batches.create(
        input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h", metadata={"suite": "sdk"}
    )
    assert batch.status == "validating", batch.status
    assert batch.metadata == {"suite": "sdk"}
    done = wait_for(client, batch.id, {"completed", "failed", "expired", "cancelled"})
    assert done.status == "completed", done
    assert done.request_counts.total == 20 and done.request_counts.completed == 20, done.request_counts
    assert done.usage is not None and done.usage.total_tokens > 0, done.usage
    assert done.error_file_id is None

    content = client.files.content(done.output_file_id)
    rows = [json.loads(line) for line in content.text.splitlines() if line]
    assert sorted(r["custom_id"] for r in rows) == sorted(f"cycle-{i}" for i in range(20))
    first = rows[0]["response"]
    assert first["status_code"] == 200
    assert first["body"]["choices"][0]["message"]["content"]

    deleted = client.files.delete(file.id)
    assert deleted.deleted and deleted.id == file.id
    try:
        client.files.retrieve(file.id)
        raise AssertionError("deleted file still retrievable")
    except openai.NotFoundError:
        pass
    return done


def check_list_pagination(client):
    created = [new_batch(client, f"page{i}", 1).id for i in range(3)]
    page = client.batches.list(limit=2)
    seen, pages = [], 0
    while True:
        pages += 1
        assert len(page.data) <= 2
        seen.extend(b.id for b in page.data)
        if not page.has_next_page():
            break
        page = page.get_next_page()
        assert pages < 50, "pagination does not end"
    assert pages >= 2, pages
    assert len(seen) == len(set(seen)), "a batch appeared twice"
    # Newest first: the three just created lead, most recent first.
    assert seen[:3] == list(reversed(created)), (seen, created)
    auto = [b.id for b in client.batches.list(limit=2)]
    assert auto == seen


def check_cancel(client, completed):
    slow = new_batch(client, "cancel", 200, extra_headers={"x-sim-lines-per-sec": "20"})
    cancelling = client.batches.cancel(slow.id)
    assert cancelling.status == "cancelling", cancelling.status
    cancelled = wait_for(client, slow.id, {"cancelled"})
    assert cancelled.cancelled_at is not None
    again = client.batches.cancel(slow.id)
    assert again.status == "cancelled"

    try:
        client.with_options(max_retries=0).batches.cancel(completed.id)
        raise AssertionError("cancelling a completed batch must fail")
    except openai.ConflictError as err:
        assert "Cannot cancel a batch with status 'completed'." in str(err), err


def check_errors(client, base_url):
    try:
        client.batches.retrieve("batch_does_not_exist")
        raise AssertionError("unknown batch found")
    except openai.NotFoundError:
        pass
    try:
        client.batches.create(input_file_id="file-x", endpoint="/v1/nope", completion_window="24h")
        raise AssertionError("bad endpoint accepted")
    except openai.BadRequestError as err:
        assert err.body["param"] == "endpoint", err.body
    wrong = OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0)
    try:
        wrong.batches.list()
        raise AssertionError("wrong key accepted")
    except openai.AuthenticationError as err:
        assert err.body["code"] == "invalid_api_key", err.body


class Ticket(BaseModel):
    category: Literal["billing", "bug", "feature", "account", "other"]
    priority: Literal["low", "medium", "high"]
    summary: str


class Item(BaseModel):
    name: str
    quantity: int


class Order(BaseModel):
    items: list[Item]
    total: float
    note: Optional[str]


def check_answers(client):
    """The SDK's own structured-output parsing (pydantic) accepts the simulator's answers."""
    messages = [
        {"role": "system", "content": "Classify the support ticket."},
        {"role": "user", "content": "My invoice was charged twice, please refund one payment."},
    ]
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=messages, response_format=Ticket)
    ticket = parsed.choices[0].message.parsed
    assert isinstance(ticket, Ticket) and ticket.category == "billing", parsed
    again = client.chat.completions.parse(model="gpt-4o-mini", messages=messages, response_format=Ticket)
    assert again.choices[0].message.content == parsed.choices[0].message.content, "not deterministic"

    order = client.chat.completions.parse(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "Two apples and a pear"}], response_format=Order
    ).choices[0].message.parsed
    assert isinstance(order, Order) and order.items and all(isinstance(i, Item) for i in order.items), order

    response = client.responses.parse(model="gpt-4o", input="The app crashes on start.", text_format=Ticket)
    assert isinstance(response.output_parsed, Ticket) and response.output_parsed.category == "bug", response

    cut = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_completion_tokens=5)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 5, cut

    # The SDK asks for base64 and decodes it.
    embedded = client.embeddings.create(model="text-embedding-3-small", input=["refunds", "crashes"])
    for item in embedded.data:
        assert len(item.embedding) == 1536, len(item.embedding)
        assert abs(math.sqrt(sum(v * v for v in item.embedding)) - 1) < 1e-5
    assert embedded.data[0].embedding != embedded.data[1].embedding
    wide = client.embeddings.create(model="text-embedding-3-large", input="x", encoding_format="float")
    assert len(wide.data[0].embedding) == 3072


def main():
    base_url, api_key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=2, timeout=30)
    completed = check_full_cycle(client)
    check_list_pagination(client)
    check_cancel(client, completed)
    check_errors(client, base_url)
    check_answers(client)
    print(f"OK (openai {openai.__version__})")


if __name__ == "__main__":
    main()
