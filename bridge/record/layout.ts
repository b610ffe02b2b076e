/**
 * The dataset a robot profile records to (live with `record`, or from bags with `dataset convert`):
 * the joint states become the profile's state feature, each feature topic its feature, and the
 * recording section's action source the action feature, all float32, joint features named by the
 * profile's joints; each camera a video feature.
 */
import type { WriterFeature } from "../../datasets/lerobot/writer.ts";
import type { RecordingProfile, RobotProfile } from "../profile.ts";

/** Topics and features of a recording. */
export interface RecordingLayout {
  stateTopic: string;
  stateFeature: string;
  actionFeature: string;
  action: RecordingProfile["action"];
  controlTopic: string;
  /** Dataset features, in column order: state, feature topics, cameras, action. */
  features: Record<string, WriterFeature>;
}

/** The layout of `profile`'s recordings (action from the command topic when it has no recording section). */
export function recordingLayout(profile: RobotProfile): RecordingLayout {
  const rec = profile.recording;
  const J = profile.joints.length;
  const actionFeature = rec?.action_feature ?? "action";
  const features: Record<string, WriterFeature> = {
    [profile.state_feature]: { dtype: "float32", shape: [J], names: [...profile.joints] },
  };
  for (const f of profile.features) features[f.feature] = { dtype: "float32", shape: [f.size] };
  for (const c of profile.cameras) features[c.feature] = { dtype: "video", shape: [c.height, c.width, 3] };
  features[actionFeature] = { dtype: "float32", shape: [J], names: [...profile.joints] };
  return {
    stateTopic: profile.ros.joint_states,
    stateFeature: profile.state_feature,
    actionFeature,
    action: rec?.action ?? { source: "command" },
    controlTopic: rec?.control_topic ?? "/actionflow/record",
    features,
  };
}
