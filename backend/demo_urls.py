from django.shortcuts import redirect
from django.urls import path


def home(request):  # type: ignore[no-untyped-def]
    # The chat page arrives with the SDK; until then the demo opens the admin.
    return redirect("/admin/")


urlpatterns = [path("", home, name="demo-home")]
