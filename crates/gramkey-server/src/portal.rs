//! The operations behind the web pages: a developer's apps and their settings, invitations to
//! roles, and what a person does with the apps they authorized. Like [`crate::ops`], they
//! validate with the domain, store, and audit; the page handlers only parse and render.

use gramkey_domain::account::{deletion_request_allowed, invitable, may_manage};
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::password::{check_policy, verify_password};
use gramkey_domain::{AppMode, ClientSecret, Password, Role};
use gramkey_store::{App, User};

use crate::audit::Entry;
use crate::ops::{AppSettings, NewAppInput, OpError, Ops};
use crate::origin::Origin;

/// What the dashboard's settings form changes.
#[derive(Debug, Clone)]
pub struct AppEdit {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: String,
    pub mode: AppMode,
    pub deauthorize_url: String,
    pub data_deletion_url: String,
    pub signed_requests: bool,
    pub device_flow: bool,
}

impl Ops {
    /// Registers an app from the dashboard; its creator becomes its admin.
    pub async fn create_app_as(
        &self,
        origin: &Origin,
        owner: &User,
        input: NewAppInput,
    ) -> Result<(App, ClientSecret), OpError> {
        let (app, secret) = self.create_app(origin, input).await?;
        if let Err(e) = self
            .store
            .set_role(&app.id, owner.id, Role::Admin, self.clock.now())
            .await
        {
            // An app nobody can manage, whose secret nobody saw, must not stay behind.
            let _ = self.store.delete_app(&app.id).await;
            return Err(e.into());
        }
        Ok((app, secret))
    }

    /// The app `id`, if `user` may manage it (as its admin or a developer), with their role.
    /// An app they may not manage is "not found", as if it did not exist.
    pub async fn managed_app(&self, user: &User, id: &str) -> Result<(App, Role), OpError> {
        let not_found = || OpError::NotFound(format!("you manage no app with id {id:?}"));
        let app = self.app(id).await.map_err(|_| not_found())?;
        let role = self.store.role(&app.id, user.id).await?;
        match role {
            Some(role) if may_manage(Some(role)) => Ok((app, role)),
            _ => Err(not_found()),
        }
    }

    /// Changes an app's settings; returns it as stored. Every setting is checked first, so a
    /// bad one changes nothing.
    pub async fn edit_app(
        &self,
        origin: &Origin,
        app: &App,
        edit: AppEdit,
    ) -> Result<App, OpError> {
        let s = AppSettings::validate(
            &edit.name,
            &edit.redirect_uris,
            &edit.scopes,
            Some(&edit.deauthorize_url),
            Some(&edit.data_deletion_url),
        )?;
        crate::ops::check_signed_requests(app, edit.signed_requests)?;
        let edited = App {
            name: s.name,
            redirect_uris: s.redirect_uris,
            scopes: s.scopes,
            mode: edit.mode,
            deauthorize_url: s.deauthorize_url,
            data_deletion_url: s.data_deletion_url,
            signed_requests: edit.signed_requests,
            device_flow: edit.device_flow,
            ..app.clone()
        };
        if !self.store.update_app(&edited).await? {
            return Err(OpError::NotFound(format!("no app with id {}", app.id)));
        }
        let mut changed = Vec::new();
        if edited.name != app.name {
            changed.push("name".to_owned());
        }
        if edited.redirect_uris != app.redirect_uris {
            changed.push("redirect URIs".into());
        }
        if edited.scopes != app.scopes {
            changed.push(format!("scopes {}", edited.scopes.to_stored()));
        }
        if edited.mode != app.mode {
            changed.push(format!("mode {}", edited.mode.as_str()));
        }
        if (&edited.deauthorize_url, &edited.data_deletion_url)
            != (&app.deauthorize_url, &app.data_deletion_url)
        {
            changed.push("callback URLs".into());
        }
        if edited.signed_requests != app.signed_requests {
            let on = if edited.signed_requests { "on" } else { "off" };
            changed.push(format!("signed requests {on}"));
        }
        if edited.device_flow != app.device_flow {
            let on = if edited.device_flow { "on" } else { "off" };
            changed.push(format!("device flow {on}"));
        }
        if !changed.is_empty() {
            self.audit(
                origin,
                AuditKind::AppChanged,
                Outcome::Success,
                Entry::default().app(&app.id).detail(changed.join(", ")),
            )
            .await;
        }
        Ok(edited)
    }

    /// Invites `username` to `role` on the app, on behalf of `by`. The role is theirs once they
    /// accept.
    pub async fn invite(
        &self,
        origin: &Origin,
        app: &App,
        username: &str,
        role: Role,
        by: Option<&User>,
    ) -> Result<User, OpError> {
        if !invitable(role) {
            return Err(OpError::Invalid(
                "people can be invited as developers or testers".into(),
            ));
        }
        let user = self.user(username).await?;
        if let Some(held) = self.store.role(&app.id, user.id).await? {
            return Err(OpError::Conflict(format!(
                "{} is already {} {} of this app",
                user.username,
                if held == Role::Admin { "an" } else { "a" },
                held.as_str()
            )));
        }
        self.store
            .invite(&app.id, user.id, role, by.map(|b| b.id), self.clock.now())
            .await?;
        self.audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default()
                .app(&app.id)
                .user(Some(user.id))
                .detail(format!("invited as {}", role.as_str())),
        )
        .await;
        Ok(user)
    }

    /// Takes `username` off the app's team: their developer or tester role, or their
    /// invitation. Admins stay (an app always keeps its admin).
    pub async fn remove_member(
        &self,
        origin: &Origin,
        app: &App,
        username: &str,
    ) -> Result<(), OpError> {
        let user = self.user(username).await?;
        if self.store.role(&app.id, user.id).await? == Some(Role::Admin) {
            return Err(OpError::Invalid(format!(
                "{} is an admin of this app; admins cannot be removed here",
                user.username
            )));
        }
        if !self.store.remove_member(&app.id, user.id).await? {
            return Err(OpError::NotFound(format!(
                "{} has no role or invitation on this app",
                user.username
            )));
        }
        self.audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default()
                .app(&app.id)
                .user(Some(user.id))
                .detail("removed from the app's roles"),
        )
        .await;
        Ok(())
    }

    /// Accepts or declines the user's pending invitation to the app.
    pub async fn answer_invitation(
        &self,
        origin: &Origin,
        user: &User,
        app_id: &str,
        accept: bool,
    ) -> Result<(), OpError> {
        let app = self.app(app_id).await?;
        if !self
            .store
            .answer_invitation(&app.id, user.id, accept, self.clock.now())
            .await?
        {
            return Err(OpError::NotFound(format!(
                "no pending invitation to {}",
                app.name
            )));
        }
        self.audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default()
                .app(&app.id)
                .user(Some(user.id))
                .detail(if accept {
                    "invitation accepted"
                } else {
                    "invitation declined"
                }),
        )
        .await;
        Ok(())
    }

    /// Asks an app the user removed to delete their data: its data-deletion callback is queued.
    /// (An app still authorized is asked when it is removed.) Once a day at most per app.
    pub async fn request_data_deletion(
        &self,
        origin: &Origin,
        user: &User,
        app_id: &str,
    ) -> Result<App, OpError> {
        let app = self.app(app_id).await?;
        let removed = self.store.removed_grants(user.id).await?;
        let Some(removal) = removed.iter().find(|r| r.app_id == app.id) else {
            return Err(OpError::NotFound(format!(
                "you have not removed {}; remove it first, asking it to delete your data",
                app.name
            )));
        };
        if let Err(next) = deletion_request_allowed(removal.deletion_requested_at, self.clock.now())
        {
            return Err(OpError::Conflict(format!(
                "you asked {} to delete your data less than a day ago; you can ask again after {}",
                app.name,
                gramkey_domain::time::graph_timestamp(next)
            )));
        }
        if app.data_deletion_url.is_none() {
            return Err(OpError::Invalid(format!(
                "{} has not set up data-deletion requests; contact its developer",
                app.name
            )));
        }
        if !self
            .store
            .request_data_deletion(&app.id, user.id, self.clock.now())
            .await?
        {
            return Err(OpError::NotFound(format!(
                "you have not authorized {}",
                app.name
            )));
        }
        self.audit(
            origin,
            AuditKind::DataDeletionRequested,
            Outcome::Success,
            Entry::default().app(&app.id).user(Some(user.id)),
        )
        .await;
        Ok(app)
    }

    /// Whether `presented` is the user's password (Argon2id, on a blocking thread). The caller
    /// throttles: see `handlers::account::change_password`.
    pub async fn password_is(&self, user: &User, presented: Password) -> bool {
        let phc = user.password_hash.clone();
        tokio::task::spawn_blocking(move || verify_password(&presented, &phc))
            .await
            .unwrap_or(false)
    }

    /// A person changes their own password, the current one checked already. Every token they
    /// hold is revoked (see [`Ops::change_password`]); returns the user as now stored.
    pub async fn change_own_password(
        &self,
        origin: &Origin,
        user: &User,
        new: Password,
    ) -> Result<User, OpError> {
        check_policy(&new)?;
        let revoked = self.change_password(origin, &user.username, new).await?;
        self.audit(
            origin,
            AuditKind::PasswordChanged,
            Outcome::Success,
            Entry::default()
                .user(Some(user.id))
                .detail(format!("{revoked} tokens revoked")),
        )
        .await;
        self.user(&user.username).await
    }
}
