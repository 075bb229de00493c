"""The harness: call → validate → retry → score → escalate, and an ``LLMResult`` at the end.

One loop serves every entry point (``chat``, ``map`` and what builds on them);
``map`` runs it on a thread pool, which suits HTTP-bound calls and keeps a
single, synchronous code path. The awaitable twins (``achat``, ``amap``, ``asample``,
``aevaluate``) run that same loop in a worker thread (``anyio.to_thread``), so an async
test's event loop keeps running while a call waits on its server, with no second copy
of the loop to keep in step.
"""

from __future__ import annotations

import contextvars
import functools
import json
import time
import warnings
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar, cast

from ._text import shorten
from .backends import Backend, BackendPool, ChatRequest, model_identity
from .backends.deadline import CallScope, Interrupt, call_scope
from .backends.pool import on_move
from .config import HarnessConfig, built_once
from .datasets import Case, DatasetResult, judge_case, load_cases, render_prompt
from .errors import (
    AccuracyTooLow,
    BackendBusy,
    BackendError,
    ConfigError,
    LLMError,
    LLMWarning,
    OutputInvalid,
    PassRateTooLow,
    QualityFailure,
    ScoreTooLow,
)
from .messages import build_messages
from .observer import JudgeObserver, Observer
from .pacing import pause_seconds, scope_for
from .result import Attempt, Completion, LLMResult
from .sampling import Sample, SampleResult, run_samples
from .scorers import EmbeddingCache
from .scoring import Score, Scorer, activated, as_result, run_scorer
from .validation import Check, CheckRejected, Rejected, Schema, check_schema, format_for, validate

__all__ = ["Harness", "Prompt"]

Prompt = str | Sequence[Mapping[str, Any]]
_T = TypeVar("_T")
_P = ParamSpec("_P")

_SHOWN_OUTPUT = 300
#: No attempt starts with less time than this left of its call (it could only time out).
_LEAST_ATTEMPT_SECONDS = 0.05
#: The re-ask after a rejection by ``check`` or a low score, without ``check_feedback``:
#: it tells the model nothing about the expected answer.
_NOT_ACCEPTED = "Your previous answer was not accepted. Answer the original request again."


@dataclass(frozen=True)
class _Call:
    """One ``chat`` as the loop sees it: what to send and how to judge the answer."""

    config: HarnessConfig
    messages: tuple[Mapping[str, Any], ...]
    format: str | dict[str, Any] | None
    schema: Schema | None
    check: Check | None
    scorer: Scorer | None
    sample: int | None = None
    models: tuple[str, ...] = ()
    """The route to try (``model`` then ``escalate_to``; ``sample`` may narrow it)."""
    answers: int = 1
    """Answers to judge per model before moving on (``1 + max_retries``, or fewer)."""


@dataclass
class _Progress:
    """What one call has done so far, for the report of a call its test's interruption stops."""

    attempts: list[Attempt] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    started: float = 0.0
    """When the current attempt (or pause) began (``perf_counter``)."""


def _awaitable(method: Callable[_P, _T]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """The awaitable twin of ``method``: the same call in a worker thread, under asyncio or
    trio (anyio), carrying the caller's context (the active harness, the call's deadline).

    A cancelled task waits for its call to end, which ``timeout_seconds`` bounds, so a
    thread never outlives its call's budget and no answer is half-recorded."""

    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        __tracebackhide__ = True
        from anyio import to_thread

        return await to_thread.run_sync(functools.partial(method, *args, **kwargs))

    run.__name__ = run.__qualname__ = f"a{method.__name__}"
    run.__doc__ = f"``await``-able :meth:`{method.__name__}`, with the same arguments and result."
    return run


class Harness:
    """Calls a model for a test and returns structured, validated results.

    The ``llm`` fixture hands each test one configured for it; outside pytest,
    ``Harness(HarnessConfig(model=...))`` works too (close it, or use ``with``).
    """

    def __init__(
        self,
        config: HarnessConfig | None = None,
        *,
        backend: Backend | Callable[[HarnessConfig], Backend] | None = None,
        observer: Observer | None = None,
        embeddings: EmbeddingCache | None = None,
    ) -> None:
        self.config = config or HarnessConfig()
        self._replaced: tuple[HarnessConfig, dict[tuple[Any, ...], HarnessConfig]] = (
            self.config,
            {},
        )
        self._own_pool: BackendPool | None = None
        if backend is None:
            self._own_pool = BackendPool()
            pool = self._own_pool
            self._backend_for: Callable[[HarnessConfig], Backend] = pool.for_config
        elif hasattr(backend, "chat"):  # a backend (a Protocol's isinstance is slow)
            fixed = cast(Backend, backend)
            self._backend_for = lambda c: fixed
        else:  # a function of the config
            self._backend_for = backend
        self._observer = observer or Observer()
        self._embeddings = embeddings or EmbeddingCache()

    # --- public API ----------------------------------------------------------------------

    def chat(
        self,
        prompt_or_messages: Prompt,
        *,
        system: str | None = None,
        schema: Schema | None = None,
        check: Check | None = None,
        scorer: Scorer | None = None,
        model: str | None = None,
        **options: Any,
    ) -> LLMResult:
        """Ask the model; retry on invalid output, escalate when needed; return the result.

        ``options`` are ``HarnessConfig`` fields overriding the test's settings for
        this call (``temperature=0.7``, ``max_retries=0``, ``escalate_to=[...]``).
        ``check`` receives the pydantic instance when ``schema`` is a pydantic model, the
        parsed JSON value for a JSON Schema dict or ``json_mode``, otherwise the text. It
        rejects an answer by raising ``AssertionError`` or ``ValueError`` or returning
        ``False``; any other exception is a bug in the check: :class:`~pytest_llm.CheckError`
        at once, no re-ask. A re-ask after a JSON or schema error tells the model the error;
        after a rejection by ``check`` or a low score it says only that the answer was not
        accepted, unless ``check_feedback=True`` (the check's message or the scorer's reason
        can hold the expected answer).
        """
        __tracebackhide__ = True  # failures point at the test, not at the loop
        call = self._prepare(prompt_or_messages, system, schema, check, scorer, model, options)
        return self._run(call)

    def map(
        self,
        prompts: Iterable[Prompt],
        *,
        system: str | None = None,
        schema: Schema | None = None,
        check: Check | None = None,
        scorer: Scorer | None = None,
        model: str | None = None,
        **options: Any,
    ) -> list[LLMResult]:
        """``chat`` over several prompts at once (at most ``concurrency`` in flight).

        Results come back in input order. Every call runs to its end; then the
        first failure, in input order, is raised. When the test is interrupted (Ctrl-C,
        pytest-timeout), queued calls never start and running ones are cut.
        """
        __tracebackhide__ = True  # failures point at the test, not at the loop
        calls = [self._prepare(p, system, schema, check, scorer, model, options) for p in prompts]
        if not calls:
            return []
        futures = _concurrently(
            [lambda stop, c=c: self._run(c, stop) for c in calls],  # type: ignore[misc]
            calls[0].config,
        )
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:  # "could not test" outranks "tested and failed", as in a single chat
            first = next((e for e in errors if not isinstance(e, QualityFailure)), errors[0])
            raise first.with_traceback(None) if isinstance(first, LLMError) else first
        return [future.result() for future in futures]

    def evaluate(
        self,
        cases: Iterable[Case | Mapping[str, Any]],
        prompt: str | Callable[[Case], Prompt],
        *,
        expected: str | None = None,
        label: str | Callable[[Any], Any] | None = None,
        system: str | None = None,
        schema: Schema | None = None,
        check: Check | None = None,
        scorer: Scorer | None = None,
        model: str | None = None,
        **options: Any,
    ) -> DatasetResult:
        """Evaluate every case of a dataset in this one test, at most ``concurrency`` at once.

        ``prompt`` is a format string filled from each case's fields (``"Classify: {text}"``)
        or a callable given the :class:`~pytest_llm.datasets.Case`. A case passes when its
        answer is accepted (``schema``, ``check``, ``scorer`` as in :meth:`chat`, with
        re-asks) and, with ``expected`` (the name of the field holding the expected label),
        when its label matches that field, compared without case and surrounding white
        space or punctuation. The label is the answer's text, or ``label``: a field of the
        parsed answer (``label="category"``) or a callable given the parsed answer (the
        text without a schema). Under pytest each case is reported as its own subtest and
        ``--llm-cases=ID,ID`` runs only those cases. Returns the
        :class:`~pytest_llm.datasets.DatasetResult` when at least ``min_accuracy`` of the
        cases pass; raises :class:`~pytest_llm.AccuracyTooLow` (failed cases first) otherwise.
        Cases with the same prompt are asked one after another in case order, so a
        cassette replays the same answer to the same case whatever the completion order.
        """
        __tracebackhide__ = True  # failures point at the test, not at the loop
        loaded = list(cases)
        if not loaded:
            raise ConfigError("evaluate() got no cases: load some with load_cases(path)")
        selected = (
            [c for c in loaded if isinstance(c, Case)]
            if all(isinstance(c, Case) for c in loaded)
            else load_cases(loaded)
        )
        selected = self._observer.select_cases(selected)
        calls = [
            self._prepare(render_prompt(prompt, c), system, schema, check, scorer, model, options)
            for c in selected
        ]
        cfg = calls[0].config if calls else self._configured(options)
        groups: dict[str, list[int]] = {}  # same request, one after another, in case order
        for i, call in enumerate(calls):
            key = json.dumps([call.config.model, list(call.messages)], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        outcomes: dict[int, LLMResult | BaseException] = {}

        def run_group(stop: Interrupt, indices: list[int]) -> None:
            for i in indices:
                try:
                    outcomes[i] = self._run(calls[i], stop)
                except Exception as exc:  # judged below, in case order
                    outcomes[i] = exc

        futures = _concurrently(
            [lambda stop, g=g: run_group(stop, g) for g in groups.values()],  # type: ignore[misc]
            cfg,
        )
        for future in futures:
            future.result()  # a bug of this loop, not a case's outcome
        errors = [o for o in outcomes.values() if isinstance(o, BaseException)]
        broken = next((e for e in errors if not isinstance(e, QualityFailure)), None)
        if broken is not None:  # "could not test" outranks "tested and failed"
            raise broken.with_traceback(None) if isinstance(broken, LLMError) else broken
        judged = tuple(
            judge_case(c, outcomes[i], _prompt(calls[i]), expected, label)
            for i, c in enumerate(selected)
        )
        outcome = DatasetResult(
            cases=judged, min_accuracy=cfg.min_accuracy, labelled=expected is not None
        )
        self._observer.on_dataset(outcome)
        if not outcome.passed:
            error = AccuracyTooLow(outcome.report())
            error.result = outcome
            raise error
        return outcome

    def sample(
        self,
        prompt_or_messages: Prompt,
        n: int | None = None,
        *,
        system: str | None = None,
        schema: Schema | None = None,
        check: Check | None = None,
        scorer: Scorer | None = None,
        model: str | None = None,
        stop_early: bool = True,
        **options: Any,
    ) -> SampleResult:
        """Ask ``n`` times independently (default: ``samples``) and count the passing answers.

        Each sample has its own seed (``seed + i``) and cassette key, so no two are the
        same cached answer. A sample is one call and passes when its output is accepted:
        it validates against ``schema``, ``check`` accepts it and ``scorer`` reaches
        ``min_score`` (retries and escalation are off inside a sample unless
        ``max_retries=``/``escalate_to=`` are passed here). At most ``concurrency`` run
        at once, and with ``stop_early`` no new sample starts once the verdict is
        certain. Returns the :class:`~pytest_llm.sampling.SampleResult` when at least
        ``min_pass_rate`` of ``n`` pass; raises :class:`~pytest_llm.PassRateTooLow` otherwise.
        """
        __tracebackhide__ = True  # failures point at the test, not at the loop
        first = self._prepare(
            prompt_or_messages, system, schema, check, scorer, model, options, sample=0
        )
        cfg = first.config
        # one answer per sample unless the caller asks for re-asks; the config (transport
        # retries, judges) stays the test's
        reask = cfg.replace(
            max_retries=options.get("max_retries", 0), escalate_to=options.get("escalate_to", ())
        )
        first = replace(first, models=reask.models, answers=reask.max_retries + 1)
        count = cfg.samples if n is None else n
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"sample(n={n!r}) is invalid: expected an integer >= 1")
        if scorer is not None and cfg.min_score is None:
            raise ConfigError(
                "sample(scorer=...) needs min_score to decide which samples pass: "
                "pass min_score=..., or set it with @pytest.mark.llm(min_score=...) or "
                "--llm-min-score"
            )
        if count > 1 and cfg.temperature == 0:
            warnings.warn(
                LLMWarning(
                    f"sample(n={count}) runs at temperature 0, where decoding is greedy: every "
                    f"sample is the same answer whatever its seed, so '{count}/{count} passed' "
                    f"would count one answer {count} times. Sample at a temperature above 0: "
                    "@pytest.mark.llm(temperature=0.8) or llm.sample(..., temperature=0.8)"
                ),
                stacklevel=2,
            )
        samples = run_samples(
            count,
            lambda i: self._sample_once(replace(first, sample=i)),
            concurrency=cfg.concurrency,
            min_pass_rate=cfg.min_pass_rate,
            stop_early=stop_early,
        )
        outcome = SampleResult(samples=tuple(samples), n=count, min_pass_rate=cfg.min_pass_rate)
        self._observer.on_sample(outcome)
        if not outcome.passed:
            error = PassRateTooLow(_sampling_report(first, outcome))
            error.result = outcome
            raise error
        return outcome

    def score(
        self, result: LLMResult | str, scorer: Scorer, *, min_score: float | None = None
    ) -> Score:
        """Score ``result`` (or plain text) without the retry loop; ``passed`` is judged
        against ``min_score``. Text is scored as an ``LLMResult`` with an empty ``model``."""
        __tracebackhide__ = True  # failures point at the test, not at the loop
        threshold = self.config.min_score if min_score is None else min_score
        return self._score(scorer, as_result(result), threshold, self.config)

    def embed(self, texts: Sequence[str], *, model: str) -> list[list[float]]:
        """Embedding vectors of ``texts`` from ``model``, cached for the session by text."""
        return self._embeddings.embed(self._backend_for(self.config), model, texts)

    def for_judge(self, model: str | None = None) -> Harness:
        """A harness for the judge model (``model``, else ``judge_model``) on the same servers.

        It is what the ``llm_judge`` fixture gives: the test's settings with temperature 0,
        no ``max_tokens`` cap, no escalation and no scoring of its own.
        """
        judge_model = model or self.config.judge_model
        if judge_model is None:
            raise ConfigError(
                "no judge model is set: use @pytest.mark.llm(judge_model=...), "
                "--llm-judge-model or the ini setting llm_judge_model (or judge(model=...))"
            )
        judge_config = self.config.replace(
            model=judge_model,
            escalate_to=(),
            temperature=0.0,
            max_tokens=None,
            json_mode=False,
            min_score=None,
            samples=1,
            min_pass_rate=1.0,
        )
        return Harness(  # as _derive, its calls marked as a judge's (role "judge")
            judge_config,
            backend=self._backend_for,
            observer=JudgeObserver(self._observer),
            embeddings=self._embeddings,
        )

    def close(self) -> None:
        if self._own_pool is not None:
            self._own_pool.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    achat = _awaitable(chat)
    amap = _awaitable(map)
    asample = _awaitable(sample)
    aevaluate = _awaitable(evaluate)

    # --- the loop ------------------------------------------------------------------------

    def _prepare(
        self,
        prompt: Prompt,
        system: str | None,
        schema: Schema | None,
        check: Check | None,
        scorer: Scorer | None,
        model: str | None,
        options: Mapping[str, Any],
        sample: int | None = None,
    ) -> _Call:
        overrides = dict(options)
        if model is not None:
            overrides["model"] = model
        config = self._configured(overrides)
        messages = build_messages(prompt, system, backend=config.backend)
        check_schema(schema)  # a broken schema is the test's error, before any call
        return _Call(
            config=config,
            messages=messages,
            format=format_for(schema, config.json_mode),
            schema=schema,
            check=check,
            scorer=scorer,
            sample=sample,
            models=config.models,
            answers=config.max_retries + 1,
        )

    def _configured(self, overrides: Mapping[str, Any]) -> HarnessConfig:
        """``self.config`` with ``overrides``: built and validated once per distinct set of
        them (a config is frozen), as a test calls ``chat(json_mode=True)`` again and again."""
        if not overrides:
            return self.config
        base, memo = self._replaced
        if base is not self.config:  # reassigned by the user: what was built is stale
            base, memo = self._replaced = (self.config, {})
        return built_once(memo, overrides, lambda: base.replace(**overrides), limit=_MEMO_CONFIGS)

    def _run(self, call: _Call, interrupt: Interrupt | None = None) -> LLMResult:
        """Judge up to ``call.answers`` answers per model along ``call.models``.

        A retryable transport fault is tried again after a growing pause
        (:func:`~pytest_llm.pacing.pause_seconds`); after ``max_retries`` of them in a row,
        or when the pause would outlast the call's time (``total_timeout_seconds``), it is
        raised (a test error). Invalid or low-scoring answers are re-asked (see
        :meth:`_judge` for what the model is told), then the next model is tried. A call
        stopped by ``interrupt`` or by the test's interruption is reported, then raised.
        """
        __tracebackhide__ = True  # failures point at the test, not at the loop
        scope = scope_for(call.config, interrupt)
        if scope.stopped:  # its test was interrupted before it started: it never ran
            raise scope.stopped_error(call.config.model, call.config.host)
        progress = _Progress()
        with call_scope(scope):  # model calls made by a check or a scorer share its time
            try:
                return self._attempts(call, scope, progress)
            except BaseException as exc:
                if not isinstance(exc, Exception):  # Ctrl-C, pytest-timeout, pytest.exit
                    self._stopped(progress, _describe(exc))
                raise

    def _attempts(self, call: _Call, scope: CallScope, progress: _Progress) -> LLMResult:
        __tracebackhide__ = True
        cfg = call.config
        backend = self._backend_for(cfg)
        attempts, route = progress.attempts, progress.route
        for model in call.models:
            route.append(model)
            conversation = list(call.messages)
            answers = transport_failures = 0
            while answers < call.answers:
                progress.started = time.perf_counter()
                try:
                    with on_move(_moved(attempts, model)):  # a host pool's failovers
                        completion = backend.chat(self._request(call, model, conversation))
                    completion = _identified(completion, backend, cfg.model_version)
                except BackendError as exc:
                    exc.host = exc.host or cfg.host  # as configured: the pool's name
                    if scope.stopped and scope.interrupt is not None:  # cut by the interrupt
                        self._stopped(progress, scope.interrupt.reason or "interrupted")
                        raise
                    if not exc.retryable:
                        raise
                    transport_failures += 1
                    attempts.append(
                        Attempt(model=model, output="", error=str(exc), rejected="transport")
                    )
                    tried = f"gave up after {transport_failures} attempt(s)"
                    if transport_failures > cfg.max_retries:
                        exc.args = (f"{exc} ({tried})",)
                        raise
                    pause, left = pause_seconds(cfg, transport_failures, exc), scope.remaining()
                    if left - pause < _LEAST_ATTEMPT_SECONDS:  # no time for another attempt
                        exc.args = (f"{exc} ({tried}: {_no_time(exc, pause, left, scope)})",)
                        raise
                    progress.started = time.perf_counter()
                    if not scope.sleep(pause) and scope.interrupt is not None:
                        why = f"{scope.interrupt.reason} (in the pause before a retry)"
                        self._stopped(progress, why)
                        raise scope.stopped_error(model, cfg.host) from exc
                    continue
                answers, transport_failures = answers + 1, 0
                outcome = self._judge(call, completion, attempts, route)
                if isinstance(outcome, LLMResult):
                    self._report(outcome)
                    return outcome
                conversation += [
                    {"role": "assistant", "content": completion.content},
                    {"role": "user", "content": outcome},
                ]
        raise self._failure(call, attempts, route)

    def _stopped(self, progress: _Progress, why: str) -> None:
        """Report a call the test's interruption stopped: it shows with its model and host."""
        if not progress.route:  # stopped before its first attempt
            return
        progress.attempts.append(
            Attempt(
                model=progress.route[-1],
                output="",
                error=f"stopped: {why}",
                rejected="transport",
                duration_ms=(time.perf_counter() - progress.started) * 1000,
            )
        )
        self._report(_result(None, progress.attempts, progress.route))

    def _request(
        self, call: _Call, model: str, conversation: list[Mapping[str, Any]]
    ) -> ChatRequest:
        cfg = call.config
        seed = cfg.seed
        if seed is not None and call.sample:
            seed += call.sample
        return ChatRequest(
            model=model,
            messages=tuple(conversation),
            format=call.format,
            temperature=cfg.temperature,
            seed=seed,
            max_tokens=cfg.max_tokens,
            keep_alive=cfg.keep_alive,
            options=cfg.extra,
            sample=call.sample,
            model_version=cfg.model_version,
        )

    def _judge(
        self, call: _Call, completion: Completion, attempts: list[Attempt], route: list[str]
    ) -> LLMResult | str:
        """Accept ``completion`` (an ``LLMResult``) or reject it (the re-ask for the model).

        A JSON or schema error is format feedback and is always told. A rejection by
        ``check`` or a low score is told only with ``check_feedback``: a check's message
        ("must name Paris") or a scorer's reason (the missing keywords) can hand the model
        the expected answer. The attempt records the reason either way, for the user.
        """
        __tracebackhide__ = True  # a broken check's traceback starts at the check
        cfg = call.config
        json_only = " Reply with JSON only." if call.format is not None else ""
        try:
            parsed = validate(
                completion.content, schema=call.schema, json_mode=cfg.json_mode, check=call.check
            )
        except Rejected as exc:
            reason = str(exc)
            if completion.truncated:
                reason += "\n" + _cut_off(cfg)
            attempts.append(_attempt(completion, error=reason, rejected="validation"))
            if isinstance(exc, CheckRejected) and not cfg.check_feedback:
                return _NOT_ACCEPTED + json_only
            return (
                f"Your previous answer was rejected: {reason}\n"
                "Answer the original request again, fixing exactly this problem." + json_only
            )
        result = _result(
            completion, [*attempts, _attempt(completion)], route, call.messages, parsed=parsed
        )
        if call.scorer is None:
            return result
        score = self._score(call.scorer, result, cfg.min_score, cfg, attempt=True)
        if not score.passed and score.threshold is not None:
            rejected = _attempt(completion, error=str(score), rejected="score", score=score.value)
            attempts.append(rejected)
            if not cfg.check_feedback:
                return _NOT_ACCEPTED + json_only
            return (
                f"Your previous answer scored {score.value:.2f}, under the required "
                f"{score.threshold:g}. {score.reason} Answer the original request again, better."
            )
        final = _attempt(completion, score=score.value)
        return _result(
            completion, [*attempts, final], route, call.messages, parsed=parsed, score=score
        )

    def _score(
        self,
        scorer: Scorer,
        result: LLMResult,
        threshold: float | None,
        config: HarnessConfig,
        *,
        attempt: bool = False,
    ) -> Score:
        """Run ``scorer`` with a harness for ``config`` active (model-backed scorers use it).

        ``attempt``: the score judges an answer of ``chat(scorer=)``; the observer is told
        whether it made the answer ``"accepted"`` or ``"rejected"`` (a report scores a test
        by its accepted answers)."""
        harness = self if config is self.config else self._derive(config)
        with activated(harness):
            score = run_scorer(scorer, result, threshold)
        if attempt:
            rejected = not score.passed and score.threshold is not None
            self._observer.on_score(score, result, "rejected" if rejected else "accepted")
        else:
            self._observer.on_score(score, result)
        return score

    def _derive(self, config: HarnessConfig) -> Harness:
        """A harness for ``config`` sharing this one's servers, cache and observer."""
        return Harness(
            config, backend=self._backend_for, observer=self._observer, embeddings=self._embeddings
        )

    def _sample_once(self, call: _Call) -> Sample:
        index = call.sample or 0
        try:
            return Sample(index=index, result=self._run(call), passed=True)
        except QualityFailure as exc:
            result: LLMResult = exc.result
            reason = result.attempts[-1].error
            return Sample(index=index, result=result, passed=False, reason=reason)

    def _report(self, result: LLMResult) -> None:
        self._observer.on_result(result)

    def _failure(self, call: _Call, attempts: list[Attempt], route: list[str]) -> QualityFailure:
        last = attempts[-1]  # a rejected answer: transport faults end the loop by raising
        result = _result(None, attempts, route, call.messages, score=last.score)
        self._report(result)
        scored_out = last.rejected == "score"
        kind = "scored under min_score" if scored_out else "was rejected"
        error_class = ScoreTooLow if scored_out else OutputInvalid
        error = error_class(_transcript(call, attempts, route, kind))
        error.result = result
        return error


_MEMO_CONFIGS = 64  # distinct sets of per-call options whose config a harness keeps


# --- helpers -------------------------------------------------------------------------------


def _concurrently(
    tasks: Sequence[Callable[[Interrupt], _T]], config: HarnessConfig
) -> list[Future[_T]]:
    """Run ``tasks`` on a thread pool (at most ``concurrency`` at once) until all have ended.

    Each task gets the :class:`Interrupt` that Ctrl-C or pytest-timeout sets: then queued
    tasks never start and running calls are cut, and the interruption propagates.
    """
    workers = max(1, min(config.concurrency, len(tasks)))
    interrupt = Interrupt()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pytest-llm")
    futures: list[Future[_T]] = []
    try:
        for task in tasks:  # each sees this thread's context (the active harness for checks)
            futures.append(pool.submit(contextvars.copy_context().run, task, interrupt))
        wait(futures)
    except BaseException as exc:  # Ctrl-C, pytest-timeout: stop the work, keep what ran
        for future in futures:  # first: a worker a cut call frees takes no queued one
            future.cancel()  # queued calls never start
        interrupt.stop(_describe(exc))  # running ones are cut, their reads stopped
        wait(futures, timeout=config.timeout_seconds + 1)  # bounded even if one is not
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return futures


def _moved(attempts: list[Attempt], model: str) -> Callable[[str, float], None]:
    """Records a call a host pool moved from a failing host as a transport attempt."""

    def record(error: str, duration_ms: float) -> None:
        attempts.append(
            Attempt(
                model=model, output="", error=error, rejected="transport", duration_ms=duration_ms
            )
        )

    return record


def _cut_off(cfg: HarnessConfig) -> str:
    """Why an answer stopped at ``done_reason='length'``: ``max_tokens``, or the server's limit."""
    if cfg.max_tokens is not None:
        return (
            f"(the output was cut off: it reached max_tokens={cfg.max_tokens} "
            "(done_reason='length'); raise max_tokens or ask for a shorter answer)"
        )
    return (
        "(the output was cut off by the server's own limit (done_reason='length'; max_tokens "
        "is not set): the model's context window or the server's default answer length, "
        "e.g. Ollama's num_ctx / num_predict or llama.cpp's --ctx-size / --n-predict; raise "
        "it on the server or ask for a shorter answer)"
    )


def _describe(exc: BaseException) -> str:
    """``KeyboardInterrupt`` or ``Failed: Timeout >2.0s`` (pytest-timeout's)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _no_time(error: BackendError, pause: float, left: float, scope: CallScope) -> str:
    """Why no attempt follows: the call's time is spent, or the pause would outlast it."""
    if left < _LEAST_ATTEMPT_SECONDS:
        return f"the time for the whole call is spent ({scope.setting})"
    asked = isinstance(error, BackendBusy) and error.retry_after == pause
    return (
        f"the next one would start after a pause of {pause:.1f} s"
        + (" (the server's Retry-After)" if asked else "")
        + f", and the call has {left:.1f} s left ({scope.setting})"
    )


def _identified(completion: Completion, backend: Backend, declared: str | None) -> Completion:
    """``completion`` with ``metadata["model_identity"]``: which weights answered, if known.

    A replayed answer carries the identity it was recorded with; a live one gets the
    server's (asked once per backend) and the user's declared ``model_version``.
    """
    if "model_identity" in completion.metadata:
        return completion
    identity = model_identity(backend, completion.model, declared)
    return replace(completion, metadata={**completion.metadata, "model_identity": identity})


def _attempt(
    completion: Completion,
    *,
    error: str | None = None,
    rejected: str | None = None,
    score: float | None = None,
) -> Attempt:
    """The record of one answer: its figures, with the server's own timings when it gave
    them (Ollama's durations, which leave out the wait for a slot) and tokens in unknown
    (``None``) when it reported no usage."""
    meta = completion.metadata
    own = [meta.get(key) for key in ("prompt_eval_ms", "eval_ms")]
    server_ms = sum(float(v) for v in own if v) if any(own) else None
    total = meta.get("server_total_ms")
    queue_ms = None
    if server_ms is not None and total:
        queue_ms = max(float(total) - completion.load_ms - server_ms, 0.0)
    return Attempt(
        model=completion.model,
        output=completion.content,
        error=error,
        rejected=rejected,
        tokens_in=None if meta.get("usage_reported") is False else completion.tokens_in,
        tokens_out=completion.tokens_out,
        duration_ms=completion.duration_ms,
        ttft_ms=completion.ttft_ms,
        load_ms=completion.load_ms,
        done_reason=completion.done_reason,
        score=score,
        cached=completion.cached,
        server_ms=server_ms,
        queue_ms=queue_ms,
    )


def _result(
    completion: Completion | None,
    attempts: list[Attempt],
    route: list[str],
    messages: tuple[Mapping[str, Any], ...] = (),
    *,
    parsed: Any = None,
    score: Score | float | None = None,
) -> LLMResult:
    """The result of a call from its attempts: the last one is the accepted answer, or,
    without ``completion`` (a failure), the last rejected one."""
    last = attempts[-1]
    metadata: dict[str, Any] = {"done_reason": last.done_reason}
    if completion is not None:
        metadata.update(completion.metadata)
    if isinstance(score, Score):
        metadata["score"] = {"name": score.name, "reason": score.reason, "details": score.details}
    return LLMResult(
        content=last.output,
        model=last.model,
        tokens_in=last.tokens_in or 0,
        tokens_out=last.tokens_out,
        duration_ms=last.duration_ms,
        ttft_ms=last.ttft_ms,
        success=completion is not None,
        retries=len(attempts) - 1,
        score=score.value if isinstance(score, Score) else score,
        metadata=metadata,
        parsed=parsed,
        attempts=tuple(attempts),
        route=tuple(route),
        load_ms=last.load_ms,
        cached=last.cached,
        messages=messages,
    )


def _prompt(call: _Call) -> str:
    return next((str(m["content"]) for m in reversed(call.messages) if m.get("role") == "user"), "")


def _transcript(call: _Call, attempts: list[Attempt], route: list[str], kind: str) -> str:
    lines = [
        f"the output of {' -> '.join(route)} {kind} in all {len(attempts)} attempt(s)",
        f"prompt: {shorten(_prompt(call), _SHOWN_OUTPUT)}",
    ]
    for i, a in enumerate(attempts, 1):
        lines.append(
            f"attempt {i} [{a.model}, {a.duration_ms:.0f} ms] {a.rejected}: "
            + (a.error or "").replace("\n", "\n    ")
        )
        if a.rejected != "transport":
            lines.append(f"    output: {shorten(a.output, _SHOWN_OUTPUT)}")
    return "\n".join(lines)


def _sampling_report(call: _Call, outcome: SampleResult) -> str:
    """Why sampling failed: the rate, the prompt, and every failed sample with its output."""
    lines = [str(outcome), f"prompt: {shorten(_prompt(call), _SHOWN_OUTPUT)}", "failed samples:"]
    for s in outcome.failures:
        reason = (s.reason or "").replace("\n", "\n    ")
        lines.append(f"  sample {s.index} [{s.result.model}]: {reason}")
        lines.append(f"    output: {shorten(s.result.content, _SHOWN_OUTPUT)}")
    return "\n".join(lines)
