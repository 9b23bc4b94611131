//! [`Event`]: every aggregate's events in one type, as the log stores them.

use crate::catalog::{
    EntityEvent, ImportEvent, RepositoryEvent, ServiceEvent, SystemEvent, TeamEvent,
};
use crate::delivery::{ChangeEvent, DeploymentEvent, IncidentEvent};
use crate::ops::OpsEvent;
use crate::plugins::installation::InstallationEvent;
use crate::plugins::marketplace::PluginEvent;
use crate::provisioning::ProvisioningEvent;
use crate::surveys::SurveyEvent;
use crate::templates::library::TemplateEvent;
use crate::templates::task::TaskEvent;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Team(TeamEvent),
    System(SystemEvent),
    Service(ServiceEvent),
    Survey(SurveyEvent),
    Deployment(DeploymentEvent),
    Change(ChangeEvent),
    Incident(IncidentEvent),
    Import(ImportEvent),
    Repository(RepositoryEvent),
    Ops(OpsEvent),
    Entity(EntityEvent),
    Provisioning(ProvisioningEvent),
    Template(TemplateEvent),
    Task(TaskEvent),
    Plugin(PluginEvent),
    Installation(InstallationEvent),
}

impl Event {
    /// The event's type name as shown to auditors and plugins, e.g. `TeamCreated`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Team(e) => e.type_name(),
            Event::System(e) => e.type_name(),
            Event::Service(e) => e.type_name(),
            Event::Survey(e) => e.type_name(),
            Event::Deployment(e) => e.type_name(),
            Event::Change(e) => e.type_name(),
            Event::Incident(e) => e.type_name(),
            Event::Import(e) => e.type_name(),
            Event::Repository(e) => e.type_name(),
            Event::Ops(e) => e.type_name(),
            Event::Entity(e) => e.type_name(),
            Event::Provisioning(e) => e.type_name(),
            Event::Template(e) => e.type_name(),
            Event::Task(e) => e.type_name(),
            Event::Plugin(e) => e.type_name(),
            Event::Installation(e) => e.type_name(),
        }
    }

    /// Every event type name, for things that refer to event types by name
    /// (survey triggers, audit filters).
    pub const TYPE_NAMES: &'static [&'static str] = &[
        "TeamCreated",
        "TeamProfileUpdated",
        "TeamMemberAdded",
        "TeamMemberRemoved",
        "TeamParentChanged",
        "TeamRetired",
        "SystemCreated",
        "SystemUpdated",
        "SystemOwnershipTransferred",
        "SystemRetired",
        "ServiceRegistered",
        "ServiceUpdated",
        "ServiceOwnershipTransferred",
        "ServiceDeprecated",
        "ServiceRetired",
        "DependencyAdded",
        "DependencyRemoved",
        "SloSet",
        "SloRemoved",
        "SurveyCreated",
        "SurveyClosed",
        "SurveyResponseSubmitted",
        "DeploymentRequested",
        "DeploymentRecorded",
        "DeploymentStarted",
        "DeploymentSucceeded",
        "DeploymentFailed",
        "ChangeRecorded",
        "ChangePullRequestLinked",
        "ChangePullRequestNoted",
        "IncidentOpened",
        "IncidentLinked",
        "IncidentResolved",
        "BackstageImportRecorded",
        "RepositoryClaimed",
        "RepositoryGithubIdRecorded",
        "MessageQuarantined",
        "EntityStored",
        "EntityRemoved",
        "ProvisionRequested",
        "ProvisionPlanned",
        "ProvisionApproved",
        "ProvisionRejected",
        "ProvisionApplyStarted",
        "ProvisionApplied",
        "ProvisionVerified",
        "ProvisionFailed",
        "TemplatePublished",
        "TaskCreated",
        "TaskStepStarted",
        "TaskStepFinished",
        "TaskStepSkipped",
        "TaskStepFailed",
        "TaskRetried",
        "TaskCompleted",
        "PluginVersionPublished",
        "PluginVersionDeprecated",
        "PluginVersionYanked",
        "PluginInstalled",
        "PluginInstallationUpgraded",
        "PluginEventsAcknowledged",
        "PluginUninstalled",
        "WebhookAttemptFailed",
        "WebhookDeadLettered",
        "WebhookEndpointDisabled",
        "WebhookReplayRequested",
        "WebhookReplayed",
        "PluginTokenRotated",
    ];
}

impl From<TeamEvent> for Event {
    fn from(e: TeamEvent) -> Self {
        Event::Team(e)
    }
}
impl From<SystemEvent> for Event {
    fn from(e: SystemEvent) -> Self {
        Event::System(e)
    }
}
impl From<ServiceEvent> for Event {
    fn from(e: ServiceEvent) -> Self {
        Event::Service(e)
    }
}

impl From<SurveyEvent> for Event {
    fn from(e: SurveyEvent) -> Self {
        Event::Survey(e)
    }
}
