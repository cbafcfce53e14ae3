"""FastAPI's security tutorial ("OAuth2 with Password (and hashing), Bearer with JWT tokens"), plus
the refresh and logout endpoints the tutorial leaves to the reader, in this documented shape:

* ``POST /token``: ``OAuth2PasswordRequestForm`` (form-encoded ``username`` / ``password``), answers
  ``{"access_token", "token_type": "bearer", "expires_in", "refresh_token"}``.
* ``POST /token/refresh``: form field ``refresh_token``; rotates it (the old one stops working) and
  answers like ``/token``; 401 for an unknown or used refresh token.
* ``POST /logout``: needs the Bearer access token; form field ``refresh_token``, which is revoked.

Differences from the tutorial: passwords are hashed with the standard library's PBKDF2 (the tutorial
uses pwdlib, one more package), and the settings come from the environment (PEER_SECRET_KEY,
PEER_ACCESS_SECONDS).
"""

import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jwt.exceptions import InvalidTokenError
from pydantic import BaseModel

SECRET_KEY = os.environ["PEER_SECRET_KEY"]
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_SECONDS = int(os.environ.get("PEER_ACCESS_SECONDS", "1800"))
SALT = secrets.token_bytes(16)


def get_password_hash(password: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, 100_000).hex()


def verify_password(plain_password: str, hashed_password: str) -> bool:
    return hmac.compare_digest(get_password_hash(plain_password), hashed_password)


fake_users_db = {
    "ann": {
        "username": "ann",
        "full_name": "Ann Example",
        "email": "ann@example.com",
        "hashed_password": get_password_hash(os.environ["PEER_PASSWORD"]),
        "disabled": False,
    }
}
refresh_tokens: dict[str, str] = {}  # refresh token -> username; rotation removes the old one


class Token(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class User(BaseModel):
    username: str
    email: str | None = None
    full_name: str | None = None
    disabled: bool | None = None


class UserInDB(User):
    hashed_password: str


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")

app = FastAPI()


def get_user(db, username: str):
    if username in db:
        return UserInDB(**db[username])
    return None


def authenticate_user(fake_db, username: str, password: str):
    user = get_user(fake_db, username)
    if not user:
        return False
    if not verify_password(password, user.hashed_password):
        return False
    return user


def create_access_token(data: dict, expires_delta: timedelta):
    to_encode = data.copy()
    expire = datetime.now(UTC) + expires_delta
    to_encode.update({"exp": expire})
    return jwt.encode(to_encode, SECRET_KEY, algorithm=ALGORITHM)


def issue_tokens(username: str) -> Token:
    refresh_token = secrets.token_urlsafe(32)
    refresh_tokens[refresh_token] = username
    access_token = create_access_token(
        data={"sub": username}, expires_delta=timedelta(seconds=ACCESS_TOKEN_EXPIRE_SECONDS)
    )
    return Token(
        access_token=access_token,
        token_type="bearer",
        expires_in=ACCESS_TOKEN_EXPIRE_SECONDS,
        refresh_token=refresh_token,
    )


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]):
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
        username = payload.get("sub")
        if username is None:
            raise credentials_exception
    except InvalidTokenError:
        raise credentials_exception from None
    user = get_user(fake_users_db, username=username)
    if user is None:
        raise credentials_exception
    return user


async def get_current_active_user(current_user: Annotated[User, Depends(get_current_user)]):
    if current_user.disabled:
        raise HTTPException(status_code=400, detail="Inactive user")
    return current_user


@app.post("/token")
async def login_for_access_token(form_data: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    user = authenticate_user(fake_users_db, form_data.username, form_data.password)
    if not user:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return issue_tokens(user.username)


@app.post("/token/refresh")
async def refresh_access_token(refresh_token: Annotated[str, Form()]) -> Token:
    username = refresh_tokens.pop(refresh_token, None)
    if username is None:
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="Invalid refresh token")
    return issue_tokens(username)


@app.post("/logout")
async def logout(
    current_user: Annotated[User, Depends(get_current_active_user)],
    refresh_token: Annotated[str, Form()],
):
    if refresh_tokens.get(refresh_token) == current_user.username:
        del refresh_tokens[refresh_token]
    return {"detail": "Logged out"}


@app.get("/users/me/")
async def read_users_me(current_user: Annotated[User, Depends(get_current_active_user)]) -> User:
    return current_user


@app.api_route("/echo", methods=["GET", "POST"])
async def echo(request: Request, current_user: Annotated[User, Depends(get_current_active_user)]):
    body = await request.body()
    return {
        "method": request.method,
        "query": request.url.query,
        "json": await request.json() if body else None,
        "user": current_user.username,
    }
