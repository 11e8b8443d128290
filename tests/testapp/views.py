"""Guarded views the tests call. Each counts its executions in the database."""

import json
import threading

from django.db import transaction
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import api_view
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from idempotent_post import idempotent
from idempotent_post.drf import IdempotentMixin
from tests.testapp.models import Widget

# Tests that need to hold a view mid-flight set these (threads share the module).
gates: dict[str, threading.Event] = {}
entered: dict[str, threading.Event] = {}


def _checkpoint(request):
    name = request.headers.get("X-Gate")
    if name:
        entered[name].set()
        gates[name].wait(timeout=30)
    if request.headers.get("X-Hold-Forever"):
        # Crash tests: tell the parent process the view body runs, then never finish
        # (the parent kills this process with SIGKILL).
        print("ENTERED", flush=True)
        threading.Event().wait()


def _create(request):
    _checkpoint(request)
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        data = {}
    widget = Widget.objects.create(
        name=str(data.get("name", "w")) if isinstance(data, dict) else "w"
    )
    response = JsonResponse({"id": widget.pk, "name": widget.name}, status=201)
    response["Location"] = f"/widgets/{widget.pk}/"
    response["X-Private"] = "not replayed"
    response.set_cookie("session-ish", "secret")
    return response


@csrf_exempt
@idempotent
def plain_create(request):
    return _create(request)


@csrf_exempt
@idempotent(required=True)
def required_create(request):
    return _create(request)


@csrf_exempt
@idempotent(atomic=False)
def nonatomic_create(request):
    return _create(request)


@csrf_exempt
@idempotent(wait=5)
def waiting_create(request):
    return _create(request)


@csrf_exempt
@idempotent
def status_view(request, code):
    _checkpoint(request)
    Widget.objects.create(name=f"status-{code}")
    return HttpResponse(f"status {code}", status=code, content_type="text/plain")


@csrf_exempt
@idempotent
def failing_view(request):
    Widget.objects.create(name="failing")
    raise RuntimeError("boom")


@csrf_exempt
@idempotent(atomic=False)
def steps_view(request):
    """T2: two phases with an outside effect, then a failure the first time."""
    charge = request.idempotency.step("charge", lambda: Widget.objects.create(name="charge").pk)
    email = request.idempotency.step("email", lambda: Widget.objects.create(name="email").pk)
    if request.headers.get("X-Fail-After-Steps"):
        raise RuntimeError("failed after the steps")
    Widget.objects.create(name="done")
    return JsonResponse({"charge": charge, "email": email}, status=201)


@csrf_exempt
@idempotent
def streaming_view(request):
    Widget.objects.create(name="stream")
    return StreamingHttpResponse(iter([b"a", b"b"]), content_type="text/plain", status=201)


@csrf_exempt
@idempotent
def file_view(request):
    import io

    Widget.objects.create(name="file")
    return FileResponse(io.BytesIO(b"file-body"), content_type="application/octet-stream")


@csrf_exempt
@idempotent
def upload_view(request):
    upload = request.FILES["file"]
    size = sum(len(chunk) for chunk in upload.chunks())
    Widget.objects.create(name=f"upload-{size}")
    return JsonResponse({"size": size, "in_memory": not hasattr(upload, "temporary_file_path")})


@csrf_exempt
@idempotent
async def async_create(request):
    from asgiref.sync import sync_to_async

    widget = await sync_to_async(Widget.objects.create)(name="async")
    return JsonResponse({"id": widget.pk}, status=201)


@api_view(["POST"])
@idempotent(required=True)
def drf_create(request):
    _checkpoint(request)
    widget = Widget.objects.create(name=str(request.data.get("name", "drf")))
    return Response(
        {"id": widget.pk, "user": request.user.username or None},
        status=status.HTTP_201_CREATED,
        headers={"Location": f"/widgets/{widget.pk}/"},
    )


class WidgetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Widget
        fields = ["id", "name"]


class WidgetViewSet(viewsets.ModelViewSet):
    queryset = Widget.objects.all()
    serializer_class = WidgetSerializer
    permission_classes = [IsAuthenticated]

    @idempotent(required=True)
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)


class MixinWidgetViewSet(IdempotentMixin, viewsets.ModelViewSet):
    queryset = Widget.objects.all()
    serializer_class = WidgetSerializer
    idempotency_options = {"required": True}


@transaction.non_atomic_requests
def unguarded(request):
    return HttpResponse("ok")


# E4: a DRF view whose permission reads the request stream before the guard runs.
from rest_framework.decorators import parser_classes, permission_classes  # noqa: E402
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser  # noqa: E402
from rest_framework.permissions import BasePermission  # noqa: E402


class ReadsDataPermission(BasePermission):
    """E4: a permission that reads ``request.data`` before the guard runs."""

    def has_permission(self, request, view):
        # As a permission that checks an owner named in the body would.
        return request.data is not None


class PlainTextParser(BaseParser):
    """Reads the stream itself: recent DRF buffers the body for its JSON and form parsers only."""

    media_type = "text/plain"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read().decode("utf-8", "replace")


@api_view(["POST"])
@parser_classes([JSONParser, FormParser, MultiPartParser, PlainTextParser])
@permission_classes([ReadsDataPermission])
@idempotent(required=True)
def drf_reads_data_create(request):
    upload = request.FILES.get("file")
    if upload:
        name = f"upload-{upload.size}"
    elif hasattr(request.data, "get"):
        name = str(request.data.get("name", "drf"))
    else:
        name = str(request.data)
    widget = Widget.objects.create(name=name)
    return Response({"id": widget.pk, "name": widget.name}, status=status.HTTP_201_CREATED)
