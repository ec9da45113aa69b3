"""The app's OpenTelemetry metrics (docs/observability.md, "Metrics"): each instrument with its
name, unit and bounded attributes, read back from the real SDK (an InMemoryMetricReader on the
global MeterProvider, tests/telemetry_support.py); and end to end: real turns, a model's token
usage and cost, an extraction, a realtime flush, an SSE client coming and going.

The reader collects with delta temporality: a test sums the points it reads.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.asgi import get_asgi_application
from django.test import override_settings

from django_ai.conversations import ConversationAgent, telemetry
from django_ai.conversations.constants import ErrorCode, ExtractionStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.files.extraction import PlainTextExtractor
from django_ai.conversations.files.extraction.tasks import run_extraction
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.models import File
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime import get_backend, reset_backend
from django_ai.conversations.realtime import views as realtime_views
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.realtime.local import LocalBackend
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.telemetry import metrics as telemetry_metrics
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall, FileFactory, wait_until
from tests.realtime_server.harness import SSEReader, UvicornThread
from tests.telemetry_support import MetricPoint, Recorded, recording

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def recorded():
    with recording() as recorded:
        yield recorded


def only(points: list[MetricPoint]) -> MetricPoint:
    assert len(points) == 1, points
    return points[0]


def summed(points: list[MetricPoint]) -> float:
    return sum(p.value or 0 for p in points)


# --- each record_* function -------------------------------------------------------------------


def test_a_turn_counts_by_agent_and_outcome_and_records_its_times_in_seconds(recorded: Recorded):
    telemetry.record_turn(agent="support", outcome="completed", duration_s=1.5, queue_wait_s=0.25)

    turn = only(recorded.metric("django_ai.turns"))
    assert (turn.value, turn.unit) == (1, "{turn}")
    assert turn.attributes == {"django_ai.agent": "support", "django_ai.turn.outcome": "completed"}
    duration = only(recorded.metric("django_ai.turn.duration"))
    assert (duration.count, duration.total, duration.unit) == (1, 1.5, "s")
    assert duration.attributes == turn.attributes
    wait = only(recorded.metric("django_ai.turn.queue_wait"))
    assert (wait.count, wait.total, wait.unit) == (1, 0.25, "s")
    assert wait.attributes == {"django_ai.agent": "support"}


def test_a_turn_without_its_times_is_only_counted(recorded: Recorded):
    telemetry.record_turn(agent="support", outcome="failed", duration_s=None, queue_wait_s=None)
    telemetry.record_turn(agent="support", outcome="failed", duration_s=None, queue_wait_s=None)

    assert only(recorded.metric("django_ai.turns")).value == 2
    assert recorded.metric("django_ai.turn.duration") == []
    assert recorded.metric("django_ai.turn.queue_wait") == []


def test_a_queue_wait_below_zero_from_clocks_that_disagree_is_recorded_as_zero(recorded: Recorded):
    telemetry.record_turn(agent="support", outcome="completed", duration_s=0.1, queue_wait_s=-0.3)
    assert only(recorded.metric("django_ai.turn.queue_wait")).total == 0


def test_time_to_first_chunk(recorded: Recorded):
    telemetry.record_first_chunk(agent="writer", seconds=0.042)

    point = only(recorded.metric("django_ai.turn.time_to_first_chunk"))
    assert (point.count, point.total, point.unit) == (1, 0.042, "s")
    assert point.attributes == {"django_ai.agent": "writer"}


def test_tokens_by_model_and_type_and_the_cost(recorded: Recorded):
    telemetry.record_tokens(agent="shop", model="gpt-4o", prompt_tokens=120, completion_tokens=30, cost=0.0006)

    tokens = recorded.metric("gen_ai.client.token.usage")
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens}
    assert set(by_type) == {"input", "output"}
    assert (by_type["input"].count, by_type["input"].total) == (1, 120)
    assert (by_type["output"].count, by_type["output"].total) == (1, 30)
    assert by_type["input"].unit == "{token}"
    assert by_type["output"].attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.token.type": "output",
        "django_ai.agent": "shop",
    }
    cost = only(recorded.metric("django_ai.cost"))
    assert cost.value == pytest.approx(0.0006) and cost.unit == "USD"
    assert cost.attributes == {"django_ai.agent": "shop", "gen_ai.request.model": "gpt-4o"}


def test_no_cost_point_when_the_cost_is_unknown_and_no_token_point_for_none_used(recorded: Recorded):
    telemetry.record_tokens(agent="shop", model="local-llm", prompt_tokens=50, completion_tokens=0, cost=None)

    [point] = recorded.metric("gen_ai.client.token.usage")
    assert point.attributes["gen_ai.token.type"] == "input"
    assert recorded.metric("django_ai.cost") == []


def test_an_extraction_by_extractor_content_type_family_and_outcome(recorded: Recorded):
    telemetry.record_extraction(
        extractor="TikaExtractor",
        content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        seconds=2.5,
        outcome="done",
    )
    telemetry.record_extraction(extractor="PlainTextExtractor", content_type="text/csv", seconds=0.01, outcome="done")

    points = {p.attributes["django_ai.file.content_type"]: p for p in recorded.metric("django_ai.extraction.duration")}
    assert set(points) == {"document", "text"}
    assert points["document"].attributes == {
        "django_ai.extractor": "TikaExtractor",
        "django_ai.file.content_type": "document",
        "django_ai.extraction.outcome": "done",
    }
    assert (points["document"].count, points["document"].total, points["document"].unit) == (1, 2.5, "s")


@pytest.mark.parametrize(
    ("content_type", "family"),
    [
        ("application/pdf", "pdf"),
        ("text/plain; charset=utf-8", "text"),
        ("text/markdown", "text"),
        ("application/json", "text"),
        ("application/msword", "document"),
        ("application/rtf", "document"),
        ("application/vnd.oasis.opendocument.text", "document"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "spreadsheet"),
        ("application/vnd.openxmlformats-officedocument.presentationml.presentation", "presentation"),
        ("IMAGE/PNG", "image"),
        ("audio/mpeg", "audio"),
        ("video/mp4", "video"),
        ("application/zip", "other"),
        ("application/x-made-up-by-a-client-12345", "other"),
        ("", "other"),
    ],
)
def test_content_type_families(content_type: str, family: str):
    assert telemetry_metrics.content_type_family(content_type) == family


def test_a_realtime_flush_counts_events_and_requests_by_backend(recorded: Recorded):
    telemetry.record_realtime_flush(backend="PusherBackend", events=12, requests=2, seconds=0.03)
    telemetry.record_realtime_flush(backend="PusherBackend", events=3, requests=1, seconds=0.01)

    events = only(recorded.metric("django_ai.realtime.events"))
    requests = only(recorded.metric("django_ai.realtime.requests"))
    assert (events.value, events.unit, requests.value, requests.unit) == (15, "{event}", 3, "{request}")
    assert events.attributes == requests.attributes == {"django_ai.realtime.backend": "PusherBackend"}
    flush = only(recorded.metric("django_ai.realtime.flush.duration"))
    assert (flush.count, flush.total) == (2, pytest.approx(0.04))


def test_sse_clients_go_up_and_back_down(recorded: Recorded):
    telemetry.sse_clients_changed(+1)
    telemetry.sse_clients_changed(+1)
    assert summed(recorded.metric("django_ai.sse.clients")) == 2
    telemetry.sse_clients_changed(-1)
    telemetry.sse_clients_changed(-1)
    points = recorded.metric("django_ai.sse.clients")
    assert summed(points) == 0
    assert {p.unit for p in points} == {"{client}"} and all(p.attributes == {} for p in points)


def test_labels_are_bounded(recorded: Recorded):
    telemetry.record_tokens(agent="", model="m" * 1000, prompt_tokens=1, completion_tokens=0, cost=None)
    point = only(recorded.metric("gen_ai.client.token.usage"))
    assert point.attributes["django_ai.agent"] == "unknown"
    assert point.attributes["gen_ai.request.model"] == "m" * 128


def test_histograms_have_bucket_boundaries_for_their_ranges(recorded: Recorded):
    telemetry.record_turn(agent="support", outcome="completed", duration_s=200, queue_wait_s=None)
    telemetry.record_tokens(agent="support", model="gpt-4o", prompt_tokens=3000, completion_tokens=0, cost=None)

    bounds = {}
    data = recorded.reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "django_ai.conversations"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if hasattr(point, "explicit_bounds"):
                        bounds[metric.name] = tuple(point.explicit_bounds)
    assert bounds["django_ai.turn.duration"][-1] == 600  # minutes-long turns, not the SDK's default 10 s
    assert bounds["gen_ai.client.token.usage"][:4] == (1, 4, 16, 64)


def test_an_api_without_bucket_advice_gets_histograms_with_its_default_buckets():
    from opentelemetry.metrics import NoOpHistogram, NoOpMeter

    class MeterBeforeTheAdvice(NoOpMeter):  # create_histogram as older opentelemetry-api had it
        def create_histogram(self, name, unit="", description=""):  # type: ignore[override]
            self.made = (name, unit, description)
            return NoOpHistogram(name, unit=unit, description=description)

    meter = MeterBeforeTheAdvice("old")
    histogram = telemetry_metrics._histogram(
        meter, "django_ai.turn.duration", unit="s", description="d", buckets=(1.0,)
    )
    assert isinstance(histogram, NoOpHistogram) and meter.made == ("django_ai.turn.duration", "s", "d")


def test_telemetry_off_records_nothing(recorded: Recorded):
    with override_settings(DJANGO_AI={"TELEMETRY_ENABLED": False}):
        telemetry.reset()
        assert telemetry.enabled() is False
        telemetry.record_turn(agent="support", outcome="completed", duration_s=1, queue_wait_s=1)
        telemetry.record_tokens(agent="support", model="gpt-4o", prompt_tokens=1, completion_tokens=1, cost=1)
        telemetry.sse_clients_changed(1)
    telemetry.reset()
    assert recorded.metrics() == []


def test_instruments_made_before_the_application_sets_its_provider_record_into_it():
    """The app creates its instruments at the first record, which may come before the application
    configures the SDK (e.g. a turn in a worker that sets its provider later): the API's proxy
    meter must hand them to the provider once set. A process of its own: the global provider is
    set once per process."""
    script = textwrap.dedent(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from django_ai.conversations.telemetry import metrics as app_metrics

        app_metrics.record_turn(agent="early", outcome="completed", duration_s=1.0, queue_wait_s=None)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        app_metrics.record_turn(agent="late", outcome="completed", duration_s=2.0, queue_wait_s=None)
        for resource in reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        print(scope.scope.name, metric.name, point.attributes["django_ai.agent"])
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = set(done.stdout.split("\n")) - {""}
    # What was recorded before the provider existed is gone (no provider to hold it); all after is kept.
    assert lines == {
        "django_ai.conversations django_ai.turns late",
        "django_ai.conversations django_ai.turn.duration late",
    }


# --- end to end ---------------------------------------------------------------------------------


class EchoAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


class StreamingAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for word in ("one ", "two ", "three"):
                stream.write(word)
        return stream.content


class BrokenAgent(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        raise RuntimeError("the agent's own failure")


def of_agent(points: list[MetricPoint], agent: str) -> list[MetricPoint]:
    return [p for p in points if p.attributes.get("django_ai.agent") == agent]


def send(agent_path: str, text: str) -> dict:
    session = ConversationService.create_session(agent_path)
    return ConversationService.send_message(session.pk, text)


@pytest.mark.django_db
def test_a_real_turn_of_an_echo_agent_moves_the_turn_metrics(recorded: Recorded):
    register_agent("metrics-echo", EchoAgent)
    assert send("metrics-echo", "hello")["status"] == "success"

    turn = only(of_agent(recorded.metric("django_ai.turns"), "metrics-echo"))
    assert turn.value == 1 and turn.attributes["django_ai.turn.outcome"] == "completed"
    duration = only(of_agent(recorded.metric("django_ai.turn.duration"), "metrics-echo"))
    assert duration.count == 1 and duration.total is not None and duration.total >= 0
    wait = only(of_agent(recorded.metric("django_ai.turn.queue_wait"), "metrics-echo"))
    assert wait.count == 1
    # An echo streams nothing: no first chunk.
    assert of_agent(recorded.metric("django_ai.turn.time_to_first_chunk"), "metrics-echo") == []


@pytest.mark.django_db
def test_a_streaming_agent_records_its_time_to_first_chunk(recorded: Recorded):
    register_agent("metrics-stream", StreamingAgent)
    assert send("metrics-stream", "count")["status"] == "success"
    assert send("metrics-stream", "again")["status"] == "success"

    first = only(of_agent(recorded.metric("django_ai.turn.time_to_first_chunk"), "metrics-stream"))
    assert first.count == 2 and first.unit == "s"
    assert only(of_agent(recorded.metric("django_ai.turns"), "metrics-stream")).value == 2
    assert only(of_agent(recorded.metric("django_ai.turn.duration"), "metrics-stream")).count == 2


@pytest.mark.django_db
def test_a_failed_turn_counts_as_failed_and_carries_no_error_text(recorded: Recorded):
    register_agent("metrics-broken", BrokenAgent)
    send("metrics-broken", "hello")

    turn = only(of_agent(recorded.metric("django_ai.turns"), "metrics-broken"))
    assert turn.attributes == {"django_ai.agent": "metrics-broken", "django_ai.turn.outcome": "failed"}
    for point in recorded.metrics():
        assert not any("own failure" in str(value) for value in point.attributes.values())


@pytest.mark.django_db
def test_an_extraction_moves_the_extraction_duration(recorded: Recorded, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    text = FileFactory(content=b"Opening hours: 9 to 5.\n", filename="hours.txt", content_type="text/plain")
    pdf = FileFactory(content=b"%PDF-1.4 not really\n", filename="report.pdf", content_type="application/pdf")
    run_extraction(text.pk, extractor=PlainTextExtractor())
    run_extraction(pdf.pk, extractor=PlainTextExtractor())
    assert File.objects.get(pk=text.pk).extraction_status == ExtractionStatus.DONE

    points = recorded.metric("django_ai.extraction.duration")
    by_family = {p.attributes["django_ai.file.content_type"]: p for p in points}
    assert set(by_family) == {"text", "pdf"}
    assert by_family["text"].attributes["django_ai.extraction.outcome"] == "done"
    assert by_family["text"].attributes["django_ai.extractor"] == PlainTextExtractor.name
    assert by_family["pdf"].attributes["django_ai.extraction.outcome"] == ErrorCode.UNSUPPORTED
    assert by_family["text"].count == by_family["pdf"].count == 1


@contextmanager
def local_backend():
    with override_settings(
        DJANGO_AI={
            "REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend",
            "SSE_HEARTBEAT_INTERVAL": 0.2,
            "STREAM_COALESCE_WINDOW": 0.02,
        }
    ):
        reset_backend()
        backend = get_backend()
        assert isinstance(backend, LocalBackend)
        try:
            yield backend
        finally:
            reset_backend()


def of_backend(points: list[MetricPoint], backend: str) -> list[MetricPoint]:
    return [p for p in points if p.attributes.get("django_ai.realtime.backend") == backend]


@pytest.mark.django_db(transaction=True)
def test_a_realtime_flush_counts_the_events_the_local_backend_delivered(recorded: Recorded):
    register_agent("metrics-stream", StreamingAgent)
    with local_backend() as backend:
        session = ConversationService.create_session("metrics-stream")
        assert ConversationService.send_message(session.pk, "count")["status"] == "success"
        assert backend.flush(timeout=10) is not False

        def published() -> int:
            return sum(len(items) for items in backend.broker._history.values())

        def counted() -> float:
            return summed(of_backend(recorded.metric("django_ai.realtime.events"), "local"))

        # Each event the broker got was delivered by the sender, which records after the batch.
        wait_until(lambda: published() > 0 and counted() == published(), timeout=10)
        requests = summed(of_backend(recorded.metric("django_ai.realtime.requests"), "local"))
        assert 1 <= requests <= counted()
        flushes = of_backend(recorded.metric("django_ai.realtime.flush.duration"), "local")
        assert sum(p.count or 0 for p in flushes) == requests  # one delivery per batch, none retried here


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_an_sse_client_connecting_and_leaving_moves_sse_clients_back_to_zero(recorded: Recorded, live_server, server):
    with local_backend():
        visitor = new_anonymous_id()
        session = ConversationService.create_session("support", anonymous_id=visitor)

        def clients() -> float:
            return summed(recorded.metric("django_ai.sse.clients"))

        with UvicornThread(get_asgi_application()) as asgi_server:
            base = live_server.url if server == "wsgi" else asgi_server.url
            reader = SSEReader(
                base,
                f"/api/conversations/realtime/events/?channel={session_channel(session.pk)}",
                headers={"X-Conversation-Anonymous-Id": visitor},
            )
            try:
                assert reader.status == 200, reader.body
                wait_until(lambda: clients() == 1, timeout=10, message="the open stream counted")
            finally:
                reader.close()
            # The server notices the client left at its next write (a heartbeat at the latest).
            wait_until(lambda: clients() == 0, timeout=10, message="the closed stream uncounted")


def test_a_stream_response_dropped_unclosed_is_uncounted_and_unsubscribed(recorded: Recorded):
    """Under ASGI, a client that leaves while the events view runs makes Django drop the view's
    response without closing it (seen with a view held past the disconnect): its count on
    django_ai.sse.clients and its place under the stream limits must still end."""
    with local_backend() as backend:
        subscription = backend.broker.subscribe(["probe-channel"], limits={"visitor:anon-x": 1})
        response = realtime_views.EventStreamResponse(iter(()), subscription=subscription)
        assert summed(recorded.metric("django_ai.sse.clients")) == 1
        del response
        gc.collect()
        wait_until(
            lambda: summed(recorded.metric("django_ai.sse.clients")) == 0 and backend.broker.subscriber_count() == 0,
            timeout=10,
            message="the dropped stream ended",
        )
        # Closed, then collected: counted down once.
        closed = realtime_views.EventStreamResponse(
            iter(()), subscription=backend.broker.subscribe(["probe-channel"], limits={"visitor:anon-x": 1})
        )
        dropped = closed._dropped
        closed.close()
        closed.close()
        del closed
        gc.collect()
        assert not dropped.alive  # closed: nothing left to run when collected
        assert summed(recorded.metric("django_ai.sse.clients")) == 0
        assert backend.broker.subscriber_count() == 0


class Pinging(LLMAgent):
    tools = ["ping"]

    def ping(self) -> str:
        """Ping."""
        return "pong"


def two_rounds(model_name: str) -> FakeModel:
    """A model call that asks for a tool, then one that answers: the turn's usage is their sum."""
    return FakeModel(
        model=model_name,
        replies=[
            FakeReply(tool_calls=[FakeToolCall("ping")], usage={"prompt_tokens": 10, "completion_tokens": 3}),
            FakeReply(text="pong it is", usage={"prompt_tokens": 20, "completion_tokens": 4}),
        ],
    )


def tokens_by_type(recorded: Recorded, agent: str) -> dict[str, MetricPoint]:
    points = of_agent(recorded.metric("gen_ai.client.token.usage"), agent)
    return {p.attributes["gen_ai.token.type"]: p for p in points}


@pytest.mark.django_db
def test_an_llm_turn_records_its_tokens_by_model_and_no_cost_for_a_model_without_a_price(recorded: Recorded):
    agent = type("MetricsUnpriced", (Pinging,), {"model": two_rounds("metrics-unpriced-model")})
    register_agent("metrics-llm", agent)
    assert send("metrics-llm", "ping")["status"] == "success"

    tokens = tokens_by_type(recorded, "metrics-llm")
    assert (tokens["input"].count, tokens["input"].total) == (1, 30)  # one record per turn and model
    assert (tokens["output"].count, tokens["output"].total) == (1, 7)
    assert tokens["input"].attributes["gen_ai.request.model"] == "metrics-unpriced-model"
    assert of_agent(recorded.metric("django_ai.cost"), "metrics-llm") == []


@pytest.mark.django_db
def test_an_llm_turn_of_a_model_priced_in_model_costs_moves_the_cost(recorded: Recorded):
    agent = type("MetricsPriced", (Pinging,), {"model": two_rounds("metrics-priced-model")})
    register_agent("metrics-llm", agent)
    with override_settings(DJANGO_AI={"MODEL_COSTS": {"metrics-priced-model": {"input": 2.5, "output": 10}}}):
        assert send("metrics-llm", "ping")["status"] == "success"

    assert tokens_by_type(recorded, "metrics-llm")["input"].total == 30
    cost = only(of_agent(recorded.metric("django_ai.cost"), "metrics-llm"))
    assert cost.value == pytest.approx((30 * 2.5 + 7 * 10) / 1_000_000)
    assert cost.attributes == {"django_ai.agent": "metrics-llm", "gen_ai.request.model": "metrics-priced-model"}
