"""The shop's API routes, included under ``/api/`` with the namespace ``api``."""

from rest_framework.routers import DefaultRouter

from demo_project.shop import api

app_name = "api"

router = DefaultRouter()
router.register("products", api.ProductViewSet, basename="product")
router.register("orders", api.OrderViewSet, basename="order")
router.register("comments", api.CommentViewSet, basename="comment")

urlpatterns = router.urls
