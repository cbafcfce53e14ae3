from rest_framework.decorators import api_view
from rest_framework.response import Response


@api_view(["GET", "POST"])
def echo(request):
    """What the client sent, for an authenticated user (the default IsAuthenticated permission)."""
    return Response(
        {
            "method": request.method,
            "query": request.META.get("QUERY_STRING", ""),
            "json": request.data if request.method == "POST" else None,
            "user": request.user.get_username(),
        }
    )
