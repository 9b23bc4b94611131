//! gRPC server reflection, `grpc.reflection.v1` and `v1alpha` (Python's
//! grpcio-reflection, Postman and older grpcurl speak only v1alpha), as the
//! reference implementations answer: a file comes with every file it
//! imports, transitively, and a failed lookup is an `ErrorResponse` in the
//! stream, which stays open for the next request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message as _;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

/// Every file and symbol of the registered descriptor sets.
#[derive(Debug, Default)]
pub struct Descriptors {
    files: HashMap<String, FileDescriptorProto>,
    /// Fully qualified symbol → the file defining it.
    symbols: HashMap<String, String>,
    services: Vec<String>,
}

impl Descriptors {
    pub fn new(encoded_sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut d = Self::default();
        for set in encoded_sets {
            for file in FileDescriptorSet::decode(*set)?.file {
                d.add(file);
            }
        }
        d.services.sort();
        Ok(d)
    }

    fn add(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_owned();
        if self.files.contains_key(&name) {
            return;
        }
        let package = file.package().to_owned();
        let mut symbols = Vec::new();
        for m in &file.message_type {
            message_symbols(&package, m, &mut symbols);
        }
        for e in &file.enum_type {
            enum_symbols(&package, e, &mut symbols);
        }
        for s in &file.service {
            let service = qualified(&package, s.name());
            for m in &s.method {
                symbols.push(format!("{service}.{}", m.name()));
            }
            self.services.push(service.clone());
            symbols.push(service);
        }
        for s in symbols {
            self.symbols.insert(s, name.clone());
        }
        self.files.insert(name, file);
    }

    /// `name` and what it imports, transitively, each once, `name` first.
    fn with_dependencies(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        self.files.get(name)?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(f) = self.files.get(&n) {
                out.push(f.encode_to_vec());
                todo.extend(f.dependency.iter().rev().cloned());
            }
        }
        Some(out)
    }

    fn by_symbol(&self, symbol: &str) -> Option<Vec<Vec<u8>>> {
        let symbol = symbol.strip_prefix('.').unwrap_or(symbol);
        self.with_dependencies(self.symbols.get(symbol)?)
    }
}

fn qualified(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn message_symbols(prefix: &str, m: &DescriptorProto, out: &mut Vec<String>) {
    let name = qualified(prefix, m.name());
    for n in &m.nested_type {
        message_symbols(&name, n, out);
    }
    for e in &m.enum_type {
        enum_symbols(&name, e, out);
    }
    out.push(name);
}

fn enum_symbols(prefix: &str, e: &EnumDescriptorProto, out: &mut Vec<String>) {
    out.push(qualified(prefix, e.name()));
}

/// One reflection service per protocol version; the messages are the same
/// shape in both.
macro_rules! reflection_service {
    ($module:ident, $name:ident) => {
        pub mod $module {
            use super::*;
            use tonic_reflection::pb::$module::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$module::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$module::server_reflection_server::{
                ServerReflection, ServerReflectionServer,
            };
            use tonic_reflection::pb::$module::{
                ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse,
                ListServiceResponse, ServerReflectionRequest, ServerReflectionResponse,
                ServiceResponse,
            };

            pub struct $name(pub Arc<Descriptors>);

            impl $name {
                pub fn server(descriptors: Arc<Descriptors>) -> ServerReflectionServer<Self> {
                    ServerReflectionServer::new(Self(descriptors))
                }

                fn answer(&self, request: Option<MessageRequest>) -> MessageResponse {
                    let d = &self.0;
                    let files = |found: Option<Vec<Vec<u8>>>, what: String| match found {
                        Some(file_descriptor_proto) => {
                            MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
                                file_descriptor_proto,
                            })
                        }
                        None => MessageResponse::ErrorResponse(ErrorResponse {
                            error_code: tonic::Code::NotFound as i32,
                            error_message: format!("{what} not found"),
                        }),
                    };
                    match request {
                        Some(MessageRequest::FileByFilename(f)) => {
                            files(d.with_dependencies(&f), format!("file {f:?}"))
                        }
                        Some(MessageRequest::FileContainingSymbol(s)) => {
                            files(d.by_symbol(&s), format!("symbol {s:?}"))
                        }
                        Some(MessageRequest::FileContainingExtension(_)) => {
                            MessageResponse::ErrorResponse(ErrorResponse {
                                error_code: tonic::Code::NotFound as i32,
                                error_message: "Paved's protos define no extensions".into(),
                            })
                        }
                        Some(MessageRequest::AllExtensionNumbersOfType(t)) => {
                            MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                                base_type_name: t,
                                extension_number: Vec::new(),
                            })
                        }
                        Some(MessageRequest::ListServices(_)) => {
                            MessageResponse::ListServicesResponse(ListServiceResponse {
                                service: d
                                    .services
                                    .iter()
                                    .map(|s| ServiceResponse { name: s.clone() })
                                    .collect(),
                            })
                        }
                        None => MessageResponse::ErrorResponse(ErrorResponse {
                            error_code: tonic::Code::InvalidArgument as i32,
                            error_message: "the request names no message_request".into(),
                        }),
                    }
                }
            }

            #[tonic::async_trait]
            impl ServerReflection for $name {
                type ServerReflectionInfoStream = std::pin::Pin<
                    Box<
                        dyn tokio_stream::Stream<Item = Result<ServerReflectionResponse, Status>>
                            + Send,
                    >,
                >;

                async fn server_reflection_info(
                    &self,
                    request: Request<Streaming<ServerReflectionRequest>>,
                ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                    let this = Self(self.0.clone());
                    let answers = request.into_inner().map(move |r| {
                        let r = r?;
                        Ok(ServerReflectionResponse {
                            valid_host: r.host.clone(),
                            message_response: Some(this.answer(r.message_request.clone())),
                            original_request: Some(r),
                        })
                    });
                    Ok(Response::new(Box::pin(answers)))
                }
            }
        }
    };
}

reflection_service!(v1, ReflectionV1);
reflection_service!(v1alpha, ReflectionV1Alpha);
