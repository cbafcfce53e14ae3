"""Claims about the user, as DOT's docs show ("Adding claims to the ID token")."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class CustomOAuth2Validator(OAuth2Validator):
    def get_additional_claims(self, request):
        user = request.user
        return {"name": user.get_full_name() or user.username, "email": user.email}
