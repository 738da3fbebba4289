"""Make moto's DynamoDB behave like DynamoDB where a long-running local stack notices.

moto answers a Query by sorting every item of the table and filtering by partition,
so each query costs O(table) and a stack that streams readings for a few minutes slows
to a crawl; and moto never expires TTL items. DynamoDB does neither. This module
narrows Query to the partition (same result, O(partition)) and runs a TTL sweeper.

It also removes per-request overheads of moto's server that bound the local stack's
throughput (profile in devstack/README.md): the dispatcher lists moto's package folder
on every request to recognise a service name (cached once here), and DynamoDB requests
go through Flask and the host-based dispatcher before reaching moto's DynamoDB handler
(:class:`DynamoDbFastPath` hands them to it directly, the same handler and answers);
and moto writes every item of an answer through its generic, shape-driven serializer
(four fifths of a Query's cost) although the items already are DynamoDB JSON: they are
written with ``json.dumps`` instead. Condition expressions without values (e.g.
``attribute_not_exists(pk)``, one per stored reading) and update expressions are parsed
once, not per request, moto's list of its handler's methods is computed once per
class, an item's size is checked once, not once per attribute, item requests without
binary values are read as the JSON they are instead of rebuilt along moto's shapes, a
request id is drawn in one call, a DynamoDB request's URL is taken from its Host header
and its form (it has none) not parsed, and a plain Query's items are not deep-copied
before they are written out.
It patches the emulator only; the functions' code is untouched.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import string
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

from moto.dynamodb.models.table import Table

_scope = threading.local()
_applied = False


def apply() -> None:
    """Patch moto once per process (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    import moto.backends
    import moto.dynamodb.models.table

    # A folder listing per request (os.listdir + isdir of ~200 entries); it never changes.
    moto_modules = frozenset(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: moto_modules
    original_query = Table.query
    original_all_items = Table.all_items

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        projection = kwargs.get("projection_expressions", args[5] if len(args) > 5 else None)
        if index_name is None and hash_key is not None and self.range_key_attr:
            _scope.partition = (self, hash_key)
            _scope.range = (
                kwargs.get("range_comparison", args[0] if args else None),
                kwargs.get("range_objs", args[1] if len(args) > 1 else None) or [],
            )
            # Nothing reshapes a plain query's items: they are only serialised.
            _scope.share_results = not projection
            try:
                return original_query(self, hash_key, *args, **kwargs)
            finally:
                _scope.partition = None
                _scope.range = None
                _scope.share_results = False
        return original_query(self, hash_key, *args, **kwargs)

    def all_items(self: Table) -> Any:
        scoped = getattr(_scope, "partition", None)
        if scoped is not None and scoped[0] is self:
            # The base-table query keeps only this partition's items anyway.
            # list() first: a copy taken without yielding to the server's other threads.
            partition = list(self.items.get(scoped[1], {}).values())
            if all(item.range_key.type == "S" for item in partition):
                partition = _within_range(partition, *(_scope.range or (None, [])))
                # Strings sort as DynamoDB sorts them (UTF-8 byte order is code point
                # order), compared in C rather than by DynamoType's __lt__.
                return sorted(partition, key=lambda item: item.range_key.value)
            return sorted(partition, key=lambda item: item.range_key)
        return original_all_items(self)

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    moto.dynamodb.models.table.copy = _QueryResultsCopy()  # type: ignore[assignment]
    _write_item_answers_as_json()
    _parse_value_free_conditions_once()
    _parse_update_expressions_once()
    _list_handler_methods_once()
    _check_item_size_once()
    _read_plain_item_requests_as_json()
    _draw_request_ids_at_once()
    _leave_json_answers_unsearched()
    _answer_batch_writes_as_json()
    emulate_partiql_inserts()


def _within_range(partition: list[Any], comparison: str | None, bounds: list[Any]) -> list[Any]:
    """The items of a partition of string sort keys that the query's key condition keeps,
    by moto's own comparison on the strings themselves (what ``DynamoType.compare`` does
    with their ``cast_value``), before moto checks each survivor again: an outbox window's
    query wants a second's few hundred items of its thousands."""
    if comparison is None or not bounds or any(bound.type != "S" for bound in bounds):
        return partition
    from moto.dynamodb.comparisons import get_comparison_func

    keeps = get_comparison_func(comparison)
    if keeps is None:
        return partition
    values = [bound.value for bound in bounds]
    return [item for item in partition if keeps(item.range_key.value, *values)]


# Data-plane requests whose members are strings, numbers, booleans, lists and maps only,
# unless an attribute value is binary (B, BS) or a member is null.
PLAIN_JSON_ACTIONS = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "GetItem",
        "Query",
        "BatchWriteItem",
        "BatchGetItem",
        "BatchExecuteStatement",
    }
)
_BINARY = (b'"B"', b'"BS"')


def _holds_none(value: Any) -> bool:
    if isinstance(value, dict):
        return any(item is None or _holds_none(item) for item in value.values())
    if isinstance(value, list):
        return any(item is None or _holds_none(item) for item in value)
    return False


def _read_plain_item_requests_as_json() -> None:
    """moto rebuilds every request's JSON along the operation's shape (a seventh of a
    write's CPU here), which changes nothing but blobs (base64 to bytes), timestamps and
    null or unknown members; an item request without binary values or nulls is its
    parsed JSON as it stands. Anything else still takes moto's parser."""
    from moto.dynamodb.responses import DynamoHandler

    generic = DynamoHandler.parse_parameters

    def parse_parameters(self: DynamoHandler, request: Any) -> None:
        body = request.data
        if self._get_action() not in PLAIN_JSON_ACTIONS or any(marker in body for marker in _BINARY):
            return generic(self, request)
        try:
            params = json.loads(body)
        except ValueError:
            return generic(self, request)
        # "null" in the body is mostly inside a string (a reading's JSON); only a JSON null
        # member is one moto's parser would drop.
        if not isinstance(params, dict) or (b"null" in body and _holds_none(params)):
            return generic(self, request)
        self.params = params
        return None

    DynamoHandler.parse_parameters = parse_parameters  # type: ignore[method-assign,assignment]


class _QueryResultsCopy:
    """The ``copy`` module as moto's table module sees it. Its Query deep-copies every item
    it found (a 300-item query: 7.1 ms in moto's backend with the copies, 2.6 without) in
    case a projection or an index reshapes them; a plain query's items are only turned
    into the answer's JSON, so they are not copied. Every other copy is the module's own."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        if getattr(_scope, "share_results", False):
            return value
        return copy.deepcopy(value, memo)


def _check_item_size_once() -> None:
    """moto builds an item attribute by attribute, re-adding the size of every attribute
    already set at each one (quadratic in the attributes, a tenth of a put's CPU); the
    same limit checked once on the whole item."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def item_init(self: Item, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        checked = LimitedSizeDict.__new__(LimitedSizeDict)
        size = 0
        for key, value in attrs.items():
            typed = DynamoType(value)
            size += bytesize(key) + typed.size()
            dict.__setitem__(checked, key, typed)
        # moto's own limit (DynamoDB's 400 KB, measured by moto at 409-410 KB).
        if size > 405_000:
            raise ItemSizeTooLarge
        self.attrs = checked

    Item.__init__ = item_init  # type: ignore[method-assign]


ParseExpression = Callable[[str | None, dict[str, str] | None, dict[str, dict[str, str]] | None], Any]


def _once_for_value_free(
    parse: ParseExpression, prepare: Callable[[Any], Any] = lambda parsed: parsed
) -> Any:
    """``parse(expression, names, values)``, remembered for expressions without values;
    one that fails is not remembered, so the caller meets the error where it expects it."""
    remembered: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def parse_once(
        expression: str | None, names: dict[str, str] | None, values: dict[str, dict[str, str]] | None
    ) -> Any:
        if values or not expression:
            return parse(expression, names, values)
        key = (expression, tuple(sorted((names or {}).items())))
        found = remembered.get(key)
        if found is None:
            try:
                found = prepare(parse(expression, names, values))
            except Exception:
                return parse(expression, names, values)
            if len(remembered) > 1024:  # expressions are few; this only bounds a surprise
                remembered.clear()
            remembered[key] = found
        return found

    return parse_once


def _parse_value_free_conditions_once() -> None:
    import moto.dynamodb.models
    import moto.dynamodb.models.table
    import moto.dynamodb.responses

    get_filter_expression = _once_for_value_free(moto.dynamodb.models.get_filter_expression)
    moto.dynamodb.models.get_filter_expression = get_filter_expression
    moto.dynamodb.models.table.get_filter_expression = get_filter_expression
    # The request handlers parse the same expressions again to validate them.
    moto.dynamodb.responses.create_condition_expression_parser = _once_for_value_free(
        moto.dynamodb.responses.create_condition_expression_parser, _ParsedCondition
    )


def _parse_update_expressions_once() -> None:
    """UpdateItem parses its expression into an AST on every request (the device registry
    and the flush lease update on every message and tick); the AST holds placeholders,
    not values, and moto's validator works on a deep copy of it, so one parse per
    expression serves every request."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    make = UpdateExpressionParser.make
    parsed: dict[str, Any] = {}

    def make_once(cls: type, expression: str) -> Any:
        tree = parsed.get(expression)
        if tree is None:
            tree = make(expression)  # a parse error raises here, and is not remembered
            if len(parsed) > 1024:
                parsed.clear()
            parsed[expression] = tree
        return tree

    UpdateExpressionParser.make = classmethod(make_once)


class _ParsedCondition:
    """Stands in for moto's ConditionExpressionParser of an expression parsed before:
    the same ``parse()`` result and found names (fresh lists: callers extend them)."""

    def __init__(self, parser: Any) -> None:
        self._condition = parser.parse()
        self._names = list(parser.expr_attr_names_found)
        self._values = list(getattr(parser, "expr_attr_values_found", []))

    def parse(self) -> Any:
        return self._condition

    @property
    def expr_attr_names_found(self) -> list[str]:
        return list(self._names)

    @property
    def expr_attr_values_found(self) -> list[str]:
        return list(self._values)


def _list_handler_methods_once() -> None:
    import moto.core.responses

    list_methods = moto.core.responses.method_names_from_class
    methods: dict[type, frozenset[str]] = {}

    def method_names_from_class(clazz: Any) -> Any:
        if clazz not in methods:
            methods[clazz] = frozenset(list_methods(clazz))
        return methods[clazz]

    moto.core.responses.method_names_from_class = method_names_from_class


def _without_nulls(value: Any) -> Any:
    # The serializer leaves out members that are None (e.g. no LastEvaluatedKey).
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _binary_as_base64(value: object) -> str:
    if isinstance(value, bytes):  # B and BS attribute values
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _write_item_answers_as_json() -> None:
    """Answers that carry items (``DynamoResult``: Get/Put/Update/DeleteItem, Query, Scan,
    batches, transactions) are plain DynamoDB JSON once moto has converted its types, so
    the JSON protocol's answer is that document itself."""
    from moto.dynamodb.responses import DynamoResult

    generic = DynamoResult.execute_result

    def execute_result(self: DynamoResult, context: Any) -> Any:
        if not isinstance(self.result, dict):
            return generic(self, context)
        try:
            body = json.dumps(_without_nulls(self.result), separators=(",", ":"), default=_binary_as_base64)
        except TypeError:  # something the JSON protocol writes differently: moto's way
            return generic(self, context)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, body

    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]


def set_up_json_request(handler: Any, request: Any, full_url: str) -> None:
    """What moto's ``BaseResponse.setup_class`` leaves on a handler, for a request of a
    JSON protocol (DynamoDB's): its URL, method, headers, region, account and parameters.
    Skipped: the form and file handling and query-string parsing that only S3 and
    query-protocol services use (setup_class parses the JSON body as a query string on
    every request): a quarter of moto's CPU for a write. Other services still get
    setup_class."""
    from moto.core.responses import get_partition
    from moto.iam.models import mark_account_as_visited

    handler.is_werkzeug_request = request.from_wsgi_server
    handler.decompress_request_body(request)
    handler.normalized_request = request
    handler.parsed_url = parsed = urlparse(full_url)
    handler.raw_body = request.data
    handler.body = handler.raw_body.decode("utf-8")
    handler.form_data = request.form
    handler.querystring = handler.data = {}
    handler.uri, handler.path, handler.raw_path = full_url, parsed.path, request.raw_path
    handler.method = request.method
    handler.region = handler.get_region_from_url(request, full_url)
    handler.partition = get_partition(handler.region)
    handler.uri_match = {}
    handler.headers = request.headers
    handler.response_headers = {"server": "amazon.com"}
    if handler.automated_parameter_parsing and handler._get_action():
        handler.parse_parameters(request)
    handler.access_key = handler.get_access_key()
    handler.current_account = handler.get_current_account()
    mark_account_as_visited(
        account_id=handler.current_account,
        access_key=handler.access_key,
        service=handler.service_name,
        region=handler.region,
    )


def _raw_url(request: Any) -> str:
    """moto's ``Request.raw_url`` (the URL as it arrived) from the Host header, instead of
    werkzeug's URL reconstruction with its IRI decoding (a twentieth of a write here)."""
    environ = request.environ
    host = environ.get("HTTP_HOST")
    if not host:
        return str(request.raw_url)
    query = environ.get("QUERY_STRING")
    url = f"{environ['wsgi.url_scheme']}://{host}{request.raw_path}"
    return f"{url}?{query}" if query else url


REQUEST_ID_CHARACTERS = string.ascii_letters + string.digits


def _draw_request_ids_at_once() -> None:
    """moto's request id (52 letters and digits, one ``random.choice`` call each: a tenth
    of a write's CPU here) drawn from the same random source in one call."""
    import moto.core.responses
    from moto.moto_api._internal import mock_random

    def gen_amzn_requestid_long(headerdict: dict[str, Any] | None = None) -> str:
        request_id = "".join(mock_random.choices(REQUEST_ID_CHARACTERS, k=52))
        if isinstance(headerdict, dict):
            headerdict["x-amzn-requestid"] = request_id
        return request_id

    moto.core.responses.gen_amzn_requestid_long = gen_amzn_requestid_long


def _leave_json_answers_unsearched() -> None:
    """moto writes an answer's request id into an XML body's ``<RequestId>`` with a regular
    expression run over every answer, a Query's whole items too; DynamoDB answers JSON, so
    its answers only get the id's header."""
    import moto.core.responses
    from moto.dynamodb.responses import DynamoHandler

    def enrich_json_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        if "status" in headers:
            headers["status"] = str(headers["status"])
        moto.core.responses.gen_amzn_requestid_long(headers)
        return headers, body

    DynamoHandler._enrich_response = staticmethod(enrich_json_response)  # type: ignore[method-assign]


def _answer_batch_writes_as_json() -> None:
    """BatchWriteItem's answer (consumed capacity, no unprocessed items) goes through
    moto's shape-driven serializer, a sixth of a write's CPU here; it is plain JSON, so it
    is written as the other item answers are (:func:`_write_item_answers_as_json`)."""
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    generic = DynamoHandler.batch_write_item

    def batch_write_item(self: DynamoHandler) -> Any:
        return DynamoResult(generic(self).result)

    DynamoHandler.batch_write_item = batch_write_item  # type: ignore[method-assign]


# PartiQL's put-if-absent with every value a parameter: INSERT INTO "t" VALUE {'a': ?, ...}
_INSERT = re.compile(r"""\s*INSERT\s+INTO\s+"([^"]+)"\s+VALUE\s*\{(.*)\}\s*""", re.IGNORECASE | re.DOTALL)
_INSERT_FIELD = re.compile(r"""\s*'((?:[^']|'')+)'\s*:\s*\?\s*(?:,|$)""")
_emulated_partiql = False
# One insert's existence check and put at a time: moto's server answers on many threads.
_insert_lock = threading.Lock()


def insert_fields(statement: str) -> tuple[str, list[str]] | None:
    """The table and attribute names of a parameterised INSERT, or None for any other
    statement (left to moto)."""
    match = _INSERT.fullmatch(statement)
    if match is None:
        return None
    fields, names, position = match.group(2), [], 0
    while position < len(fields):
        found = _INSERT_FIELD.match(fields, position)
        if found is None or found.end() == position:
            return None
        names.append(found.group(1).replace("''", "'"))
        position = found.end()
    return match.group(1), names


def emulate_partiql_inserts() -> None:
    """BatchExecuteStatement's INSERTs as DynamoDB runs them. moto (5.2) cannot run a
    parameterised INSERT in a batch (its parser fails on ``?``), lets an INSERT replace an
    existing item (DynamoDB answers ``DuplicateItem``), and converts every item of every
    table to JSON for each statement. Here each such INSERT is a put conditional on its
    key being free, answered per statement as DynamoDB's BatchStatementResponse is
    (docs: API_BatchStatementError, ql-reference.insert); other statements go to moto."""
    global _emulated_partiql
    if _emulated_partiql:
        return
    _emulated_partiql = True
    from moto.dynamodb.exceptions import ConditionalCheckFailed
    from moto.dynamodb.models import DynamoDBBackend

    generic = DynamoDBBackend.batch_execute_statement

    def run_insert(backend: DynamoDBBackend, table_name: str, names: list[str], values: list[Any]) -> Any:
        if table_name not in backend.tables:
            return {"Error": {"Code": "ResourceNotFound", "Message": "Requested resource not found"}}
        if len(values) != len(names):
            message = (
                f"Number of parameters in request and statement don't match ({len(values)} != {len(names)})"
            )
            return {"Error": {"Code": "ValidationError", "Message": message}}
        table = backend.tables[table_name]
        try:
            with _insert_lock:
                table.put_item(
                    dict(zip(names, values, strict=True)),
                    condition_expression="attribute_not_exists(#key)",
                    expression_attribute_names={"#key": table.hash_key_attr},
                )
        except ConditionalCheckFailed:
            message = "Duplicate primary key exists in table"
            return {"Error": {"Code": "DuplicateItem", "Message": message}}
        except Exception as error:  # moto's validation (key types, item size): the statement's error
            return {"Error": {"Code": "ValidationError", "Message": getattr(error, "message", str(error))}}
        return {"TableName": table_name}

    def batch_execute_statement(
        self: DynamoDBBackend, statements: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        for statement in statements:
            insert = insert_fields(statement["Statement"])
            if insert is None:
                answers.extend(generic(self, [statement]))
            else:
                answers.append(run_insert(self, *insert, list(statement.get("Parameters", []))))
        return answers

    DynamoDBBackend.batch_execute_statement = batch_execute_statement  # type: ignore[method-assign]


DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class DynamoDbFastPath:
    """A WSGI app in front of moto's server app: DynamoDB requests (``X-Amz-Target:
    DynamoDB_20120810.*``) go straight to moto's ``DynamoHandler``, as moto's own Flask
    view would call it; everything else goes to ``fallback`` unchanged."""

    def __init__(self, fallback: WsgiApp) -> None:
        from moto.dynamodb.responses import DynamoHandler
        from moto.moto_server.werkzeug_app import BackendRequest
        from werkzeug.datastructures import ImmutableMultiDict

        self._fallback = fallback
        self._handler = DynamoHandler
        self._request_class = BackendRequest
        self._no_form: ImmutableMultiDict[str, Any] = ImmutableMultiDict()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            return self._fallback(environ, start_response)
        from werkzeug.wrappers import Response

        request = self._request_class(environ)
        # A DynamoDB request is JSON, never a form: what werkzeug's form parsing would find.
        request.form = request.files = self._no_form
        status, headers, body = self._dispatch(request, _raw_url(request))
        return Response(response=body, status=status, headers=headers)(environ, start_response)

    def answer(
        self, method: str, raw_path: str, headers: Any, body: bytes, url: str
    ) -> tuple[int, dict[str, str], bytes]:
        """A DynamoDB request as an HTTP server parsed it (``headers``: looked up in any
        case), answered by moto's handler as :meth:`__call__` answers it, without building
        a WSGI environ, werkzeug's request and its response around it (a tenth of moto's
        CPU for a write). Status, headers (as werkzeug would send them) and body."""
        request = _JsonRequest(method, raw_path, headers, body, self._no_form)
        status, answer_headers, content = self._dispatch(request, url)
        sent = {name: str(value) for name, value in answer_headers.items()}
        if not any(name.lower() == "content-type" for name in sent):
            sent["Content-Type"] = "text/plain; charset=utf-8"  # werkzeug's default
        return status, sent, content.encode() if isinstance(content, str) else bytes(content or b"")

    def _dispatch(self, request: Any, url: str) -> tuple[int, dict[str, Any], Any]:
        from botocore.exceptions import ClientError

        try:
            handler = self._handler()
            set_up_json_request(handler, request, url)
            result = handler.call_action()
        except ClientError as error:  # as moto's convert_to_flask_response answers it
            result = 400, {}, error.response["Error"]["Message"]
        return result if len(result) == 3 else (200, {}, result)


class _JsonRequest:
    """What moto's DynamoDB handler and :func:`set_up_json_request` read of a request
    (werkzeug's request, which moto's server builds, has much more)."""

    from_wsgi_server = True
    # A compressed body (botocore never compresses DynamoDB's) goes through __call__.
    content_encoding = None

    def __init__(self, method: str, raw_path: str, headers: Any, body: bytes, no_form: Any) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = unquote(raw_path)
        self.headers = headers
        self.data = body
        self.content_type = headers.get("Content-Type")
        # A JSON request has no form and no query parameters.
        self.form = self.values = self.args = no_form


def expire_items(tables: Callable[[], list[Table]], now: float | None = None) -> int:
    """Delete items whose TTL attribute is in the past, as DynamoDB's TTL does."""
    now = time.time() if now is None else now
    removed = 0
    for table in tables():
        ttl = table.ttl or {}
        attribute = ttl.get("AttributeName")
        if ttl.get("TimeToLiveStatus") != "ENABLED" or not attribute:
            continue
        # Empty partitions stay: removing keys of table.items could break a concurrent request.
        for partition in list(table.items.values()):
            if not isinstance(partition, dict):
                continue
            for range_key, item in list(partition.items()):
                value = item.attrs.get(attribute)
                if value is not None and value.type == "N" and float(value.value) < now:
                    partition.pop(range_key, None)
                    removed += 1
    return removed


def all_tables() -> list[Table]:
    from moto.dynamodb.models import dynamodb_backends

    return [
        table
        for account in dynamodb_backends.values()
        for backend in account.values()
        for table in backend.tables.values()
    ]


class TtlSweeper(threading.Thread):
    """Runs ``expire_items`` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__(name="ttl-sweeper", daemon=True)
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            expire_items(all_tables)

    def stop(self) -> None:
        self._stopped.set()
