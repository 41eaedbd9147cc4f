"""The benchmarks' own machinery (not their figures: `make bench` measures, tests do not time)."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3

from bench import coldstart
from bench.support import CannedAws, percentile
from bench.table import print_table


def test_canned_aws_answers_chosen_operations_in_process_and_records_real_answers() -> None:
    sent: list[dict[str, Any]] = []

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        sent.append(request)
        entries = request["Entries"]
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": f"m-{e['Id']}", "MD5OfMessageBody": hashlib.md5(b"x").hexdigest()}
                for e in entries
            ],
            "Failed": [],
        }

    canned = CannedAws().install()
    try:
        canned.answers["AmazonSQS.SendMessageBatch"] = answer
        # Nothing listens on port 9: only an answer given in-process can succeed.
        sqs = boto3.client(
            "sqs",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        response = sqs.send_message_batch(
            QueueUrl="http://127.0.0.1:9/123456789012/q",
            Entries=[{"Id": "0", "MessageBody": "x"}, {"Id": "1", "MessageBody": "x"}],
        )
    finally:
        canned.restore()
    assert [s["Id"] for s in response["Successful"]] == ["0", "1"]
    assert [e["MessageBody"] for e in sent[0]["Entries"]] == ["x", "x"]


def test_cold_start_stages_the_layers_requirements_and_what_they_depend_on() -> None:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in coldstart.layer_distributions()}
    assert {"boto3", "botocore", "s3transfer", "urllib3", "aws-lambda-powertools", "pydantic", "cryptography"} <= names
    assert "aws-xray-sdk" in names  # aws-lambda-powertools[tracer]
    assert not names & {"moto", "pytest", "requests-mock"}  # development tools stay out of the layer


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.99) == 99.0
    assert percentile(samples, 0.5) == 50.0
    assert percentile([3.0], 0.99) == 3.0


def test_tables_are_aligned_markdown_with_their_note(capsys: Any) -> None:
    print_table("T", [{"a": 1.5, "bb": "x"}, {"a": 1234.0, "bb": ""}], note="why")
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["## T", "", "| a     | bb |", "|-------|----|", "| 1.50  | x  |", "| 1,234 |    |", "", "why"]
