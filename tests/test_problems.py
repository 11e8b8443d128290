"""C2: problem answers are never cached, and their types are documented URLs or urns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from idempotent_post import responses
from idempotent_post.responses import Problem

DOCS = "https://example.com/errors"
README = Path(__file__).resolve().parent.parent / "README.md"

# Every problem the app answers with, by its short name and status.
PROBLEMS = {
    "invalid-key": (responses.INVALID_KEY, 400),
    "missing-key": (responses.MISSING_KEY, 400),
    "bad-request-body": (responses.BAD_BODY, 400),
    "in-progress": (responses.IN_PROGRESS, 409),
    "response-not-kept": (responses.RESPONSE_NOT_KEPT, 410),
    "response-unreadable": (responses.RESPONSE_UNREADABLE, 410),
    "body-too-large": (responses.BODY_TOO_LARGE, 413),
    "key-reused": (responses.MISMATCH, 422),
    "lock-unavailable": (responses.UNAVAILABLE, 503),
}


def problem_of(response) -> dict:
    assert response["Content-Type"] == "application/problem+json"
    return json.loads(response.content)


def test_C2_every_problem_is_listed_here():
    defined = {
        value.name: value for value in vars(responses).values() if isinstance(value, Problem)
    }
    assert defined == {name: problem for name, (problem, _) in PROBLEMS.items()}
    for name, (problem, status) in PROBLEMS.items():
        assert problem.type == f"urn:idempotent-post:{name}"
        assert problem.status == status


# Answers of a real guarded view.


@pytest.mark.django_db
def test_C2_a_problem_answer_is_not_stored_by_caches(client):
    response = client.post("/t/required/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 400
    assert response["Cache-Control"] == "no-store"
    assert problem_of(response)["type"] == "urn:idempotent-post:missing-key"


@pytest.mark.django_db
def test_C2_without_docs_url_the_types_are_urns(client):
    response = client.post(
        "/t/required/", {}, content_type="application/json", headers={"Idempotency-Key": "a b"}
    )
    assert response.status_code == 400
    assert response["Cache-Control"] == "no-store"
    assert problem_of(response)["type"] == "urn:idempotent-post:invalid-key"


@pytest.mark.django_db
def test_C2_with_docs_url_the_types_are_urls_under_it(client, settings):
    settings.IDEMPOTENT_POST_DOCS_URL = DOCS
    missing = client.post("/t/required/", {}, content_type="application/json")
    invalid = client.post(
        "/t/required/", {}, content_type="application/json", headers={"Idempotency-Key": "a b"}
    )
    assert problem_of(missing) == {
        "type": "https://example.com/errors#missing-key",
        "title": "Idempotency key required",
        "status": 400,
        "detail": problem_of(missing)["detail"],
    }
    assert problem_of(invalid)["type"] == "https://example.com/errors#invalid-key"
    assert missing["Cache-Control"] == invalid["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_C2_a_reused_key_answer_from_a_real_view(client, settings):
    settings.IDEMPOTENT_POST_DOCS_URL = DOCS
    headers = {"Idempotency-Key": "k-reused"}
    first = client.post(
        "/t/required/", {"name": "a"}, content_type="application/json", headers=headers
    )
    assert first.status_code == 201
    # The view's own answer is not a problem: its headers stay the view's.
    assert "Cache-Control" not in first
    replay = client.post(
        "/t/required/", {"name": "a"}, content_type="application/json", headers=headers
    )
    assert replay["Idempotent-Replayed"] == "true"
    assert "Cache-Control" not in replay

    reused = client.post(
        "/t/required/", {"name": "b"}, content_type="application/json", headers=headers
    )

    assert reused.status_code == 422
    assert reused["Cache-Control"] == "no-store"
    assert problem_of(reused)["type"] == "https://example.com/errors#key-reused"


@pytest.mark.django_db
def test_C2_drf_views_answer_the_same(settings):
    client = APIClient()
    response = client.post("/t/drf/", {"name": "x"}, format="json")
    assert response.status_code == 400
    assert response["Cache-Control"] == "no-store"
    assert problem_of(response)["type"] == "urn:idempotent-post:missing-key"
    settings.IDEMPOTENT_POST_DOCS_URL = DOCS
    response = client.post("/t/drf/", {"name": "x"}, format="json")
    assert problem_of(response)["type"] == "https://example.com/errors#missing-key"


# Every problem type.


@pytest.mark.parametrize("name", PROBLEMS)
def test_C2_every_problem_type_is_a_fragment_of_the_docs_url(settings, name):
    problem, status = PROBLEMS[name]
    settings.IDEMPOTENT_POST_DOCS_URL = DOCS
    response = responses.problem_response(problem, "detail", Retry_After="3")
    assert response.status_code == status
    assert response["Cache-Control"] == "no-store"
    assert response["Retry-After"] == "3"
    assert problem_of(response) == {
        "type": f"{DOCS}#{name}",
        "title": problem.title,
        "status": status,
        "detail": "detail",
    }


@pytest.mark.parametrize("name", PROBLEMS)
def test_C2_every_problem_type_is_a_urn_without_docs_url(name):
    problem, _ = PROBLEMS[name]
    response = responses.problem_response(problem, "detail")
    assert response["Cache-Control"] == "no-store"
    assert problem_of(response)["type"] == f"urn:idempotent-post:{name}"


@pytest.mark.parametrize(
    ("docs_url", "expected"),
    [
        ("https://example.com/errors", "https://example.com/errors#in-progress"),
        ("https://example.com/errors/", "https://example.com/errors/#in-progress"),
        # A link to the README's section: its own fragment gives way to the type's.
        (
            "https://github.com/o/r/blob/main/README.md#problem-types",
            "https://github.com/o/r/blob/main/README.md#in-progress",
        ),
        ("", "urn:idempotent-post:in-progress"),
        (None, "urn:idempotent-post:in-progress"),
        # A wrong setting must not make every error answer a 500.
        (["https://example.com"], "urn:idempotent-post:in-progress"),
    ],
)
def test_C2_docs_url_forms(settings, docs_url, expected):
    settings.IDEMPOTENT_POST_DOCS_URL = docs_url
    assert responses.problem_type(responses.IN_PROGRESS) == expected


# The README documents every type, under anchors that are the types' fragments.


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _problem_types_section() -> str:
    readme = README.read_text()
    clients = readme.split("\n## What clients see\n", 1)[1].split("\n## ", 1)[0]
    return clients.split("\n### Problem types\n", 1)[1].split("\n### ", 1)[0]


def test_C2_the_readme_lists_every_type_under_its_fragment():
    section = _problem_types_section()
    headings = re.findall(r"^#### (.+)$", section, flags=re.MULTILINE)
    assert [_anchor(heading) for heading in headings] == list(PROBLEMS)
    parts = re.split(r"^#### .+$", section, flags=re.MULTILINE)[1:]
    for name, text in zip(PROBLEMS, parts, strict=True):
        problem, status = PROBLEMS[name]
        assert f"`urn:idempotent-post:{name}`" in text, name
        assert f"**{status}**" in text, name
        assert problem.title in text, name
    # No other heading in the README takes one of these anchors.
    every = [_anchor(h) for h in re.findall(r"^#+ (.+)$", README.read_text(), re.MULTILINE)]
    for name in PROBLEMS:
        assert every.count(name) == 1, name
