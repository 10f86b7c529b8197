"""Pages for accounts: login, logout, first-run setup, invites, API tokens, users, members."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, NumberRange

from labelandlearn.auth import users
from labelandlearn.auth.permissions import ROLES, set_membership
from labelandlearn.errors import LabelAndLearnError, NotFoundError
from labelandlearn.services.projects import get_project
from labelandlearn.storage.models import ApiToken, Membership, Project, User
from labelandlearn.web.access import ADMIN, AUTHENTICATED, PUBLIC, requires
from labelandlearn.web.state import state

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Log in")


class SetupForm(FlaskForm):
    setup_code = StringField("Setup code (printed by the server)", validators=[DataRequired()])
    username = StringField("Admin user name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Create admin")


class SignupForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Create account")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField("New password", validators=[DataRequired()])
    submit = SubmitField("Change password")


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired()])
    submit = SubmitField("Create token")


class UserForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    is_admin = BooleanField("Admin")
    submit = SubmitField("Create user")


class InviteForm(FlaskForm):
    hours = IntegerField("Valid for (hours)", default=72, validators=[NumberRange(1, 720)])
    is_admin = BooleanField("Admin")
    submit = SubmitField("Create invite link")


class MemberForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired()])
    role = SelectField("Role", choices=[(role, role) for role in ROLES])
    submit = SubmitField("Save member")


class EmptyForm(FlaskForm):
    """A form with only the CSRF token, for buttons that change state."""


def _submitted(form: FlaskForm) -> bool:
    """Return whether this POST came from ``form``, on pages that carry several forms."""
    prefix = form._prefix  # WTForms stores the prefix with its trailing dash
    return request.method == "POST" and any(key.startswith(prefix) for key in request.form)


def _safe_next(target: str | None) -> str:
    """Return ``target`` when it is a path on this site, else the home page."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("projects.index")


@bp.route("/login", methods=["GET", "POST"])
@requires(PUBLIC)
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        limiter = state().login_limiter
        address = request.remote_addr or "unknown"
        username = form.username.data or ""
        wait = limiter.retry_after(username, address)
        if wait > 0:
            flash(f"Too many failed logins. Try again in {int(wait // 60) + 1} minutes.", "error")
            return render_template("auth/login.html", form=form), 429
        info = users.authenticate(state().db, username, form.password.data or "")
        if info is None:
            limiter.record_failure(username, address)
            flash("Wrong user name or password.", "error")
            return render_template("auth/login.html", form=form), 401
        limiter.record_success(username)
        from labelandlearn.web.app import LoginUser

        login_user(LoginUser(info.id, info.username, info.is_admin))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@requires(PUBLIC)
def logout() -> Response:
    logout_user()
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
@requires(PUBLIC)
def setup() -> Any:
    app_state = state()
    if app_state.setup_token is None:
        return redirect(url_for("projects.index"))
    form = SetupForm()
    if form.validate_on_submit():
        if not hmac.compare_digest(form.setup_code.data or "", app_state.setup_token):
            flash("Wrong setup code; it is printed on the server's console.", "error")
            return render_template("auth/setup.html", form=form), 403
        try:
            users.create_user(
                app_state.db, form.username.data or "", form.password.data or "", is_admin=True
            )
        except LabelAndLearnError as error:
            flash(str(error), "error")
            return render_template("auth/setup.html", form=form), error.http_status
        app_state.setup_token = None
        flash("Admin account created. Log in.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/setup.html", form=form)


@bp.route("/invite/<token>", methods=["GET", "POST"])
@requires(PUBLIC)
def accept_invite(token: str) -> Any:
    if not users.invite_is_open(state().db, token):
        raise NotFoundError("this invite link is invalid, used or expired; ask for a new one")
    form = SignupForm()
    if form.validate_on_submit():
        try:
            users.accept_invite(
                state().db, token, form.username.data or "", form.password.data or ""
            )
        except LabelAndLearnError as error:
            flash(str(error), "error")
            return render_template("auth/signup.html", form=form), error.http_status
        flash("Account created. Log in.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/signup.html", form=form)


@bp.route("/account", methods=["GET", "POST"])
@requires(AUTHENTICATED)
def account() -> Any:
    password_form = PasswordForm(prefix="password")
    token_form = TokenForm(prefix="token")
    new_token = None
    try:
        if _submitted(password_form) and password_form.validate_on_submit():
            users.change_password(
                state().db,
                current_user.id,
                password_form.current.data or "",
                password_form.new.data or "",
            )
            flash("Password changed.", "success")
        elif _submitted(token_form) and token_form.validate_on_submit():
            new_token = users.create_api_token(
                state().db, current_user.id, token_form.name.data or ""
            )
    except LabelAndLearnError as error:
        flash(str(error), "error")
    with state().db.session() as session:
        tokens = list(
            session.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == current_user.id)
                .order_by(ApiToken.created_at.desc())
            )
        )
    return render_template(
        "auth/account.html",
        password_form=password_form,
        token_form=token_form,
        tokens=tokens,
        new_token=new_token,
        revoke_form=EmptyForm(),
    )


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@requires(AUTHENTICATED)
def revoke_token(token_id: int) -> Response:
    if EmptyForm().validate_on_submit():
        users.revoke_api_token(state().db, current_user.id, token_id)
        flash("Token revoked.", "success")
    return redirect(url_for("auth.account"))


@bp.route("/admin/users", methods=["GET", "POST"])
@requires(ADMIN)
def admin_users() -> Any:
    user_form = UserForm(prefix="user")
    invite_form = InviteForm(prefix="invite")
    invite_link = None
    try:
        if _submitted(user_form) and user_form.validate_on_submit():
            users.create_user(
                state().db,
                user_form.username.data or "",
                user_form.password.data or "",
                is_admin=bool(user_form.is_admin.data),
            )
            flash(f"User {user_form.username.data} created.", "success")
        elif _submitted(invite_form) and invite_form.validate_on_submit():
            token = users.create_invite(
                state().db,
                current_user.id,
                is_admin=bool(invite_form.is_admin.data),
                hours=invite_form.hours.data or 72,
            )
            invite_link = url_for("auth.accept_invite", token=token, _external=True)
    except LabelAndLearnError as error:
        flash(str(error), "error")
    with state().db.session() as session:
        all_users = list(session.scalars(select(User).where(User.username != users.LOCAL_USERNAME)))
        projects = session.execute(select(Project.id, Project.name).order_by(Project.name)).all()
    return render_template(
        "auth/users.html",
        user_form=user_form,
        invite_form=invite_form,
        users=all_users,
        invite_link=invite_link,
        projects=projects,
    )


@bp.route("/projects/<int:project_id>/members", methods=["GET", "POST"])
@requires("manage")
def members(project_id: int) -> Any:
    form = MemberForm()
    remove_form = EmptyForm()
    app_state = state()
    if form.validate_on_submit():
        try:
            with app_state.db.session() as session:
                user = users.find_user(session, (form.username.data or "").strip())
                set_membership(session, project_id, user.id, form.role.data)
            flash(f"{user.username} is now {form.role.data}.", "success")
        except LabelAndLearnError as error:
            flash(str(error), "error")
    with app_state.db.session() as session:
        project = get_project(session, project_id)
        rows = session.execute(
            select(Membership.user_id, User.username, Membership.role)
            .join(User, User.id == Membership.user_id)
            .where(Membership.project_id == project_id)
            .order_by(User.username)
        ).all()
        project_name = project.name
    return render_template(
        "auth/members.html",
        project_id=project_id,
        project_name=project_name,
        members=rows,
        form=form,
        remove_form=remove_form,
    )


@bp.route("/projects/<int:project_id>/members/<int:user_id>/remove", methods=["POST"])
@requires("manage")
def remove_member(project_id: int, user_id: int) -> Response:
    if EmptyForm().validate_on_submit():
        with state().db.session() as session:
            set_membership(session, project_id, user_id, None)
        flash("Member removed.", "success")
    return redirect(url_for("auth.members", project_id=project_id))
